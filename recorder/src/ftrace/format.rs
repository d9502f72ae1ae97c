//! Event `format` files of tracefs: each event's id and the offset, size and signedness of its
//! fields, including `__data_loc` strings and fixed arrays, so the binary records can be
//! decoded without the text output.

/// One field of an event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C type as written (`unsigned int`, `char`, `__data_loc char[]`, ...).
    pub ctype: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
    /// `__data_loc`: a u32 (offset | len << 16) pointing at variable data in the record.
    pub data_loc: bool,
    /// Element count of a fixed array (`char comm[16]` → 16), 0 for scalars.
    pub array_len: usize,
}

impl Field {
    /// Whether the field holds text (`char[]`, `__data_loc char[]`).
    pub fn is_string(&self) -> bool {
        self.ctype.starts_with("char") || self.ctype.contains("char[]")
    }
}

/// An event's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    pub system: String,
    pub name: String,
    pub id: u16,
    /// Fields after the common ones.
    pub fields: Vec<Field>,
}

impl EventFormat {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Parses one `format` file.
pub fn parse(system: &str, text: &str) -> Result<EventFormat, String> {
    let mut name = None;
    let mut id = None;
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("name:") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("ID:") {
            id = v.trim().parse::<u16>().ok();
        } else if line.starts_with("field:") {
            let f = parse_field(line).ok_or_else(|| format!("bad field line {line:?}"))?;
            if !f.name.starts_with("common_") {
                fields.push(f);
            }
        }
    }
    Ok(EventFormat {
        system: system.to_string(),
        name: name.ok_or("no name: line")?,
        id: id.ok_or("no ID: line")?,
        fields,
    })
}

/// The largest offset or size a field can have (pages are 4 KiB on most kernels, 64 KiB at most).
const MAX_EVENT_BYTES: usize = 1 << 16;

/// `field:unsigned int nr_sector; offset:24; size:4; signed:0;`
fn parse_field(line: &str) -> Option<Field> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, false);
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once(':')?;
        match k.trim() {
            "field" => decl = Some(v.trim().to_string()),
            "offset" => offset = v.trim().parse().ok(),
            "size" => size = v.trim().parse().ok(),
            "signed" => signed = v.trim() == "1",
            _ => {}
        }
    }
    let decl = decl?;
    let data_loc = decl.starts_with("__data_loc") || decl.starts_with("__rel_loc");
    // The name is the last word, with any `[N]` after it.
    let (ctype, last) = decl.rsplit_once(' ')?;
    let (name, array_len) = match last.split_once('[') {
        Some((n, rest)) => (
            n.to_string(),
            rest.trim_end_matches(']').parse().unwrap_or(0),
        ),
        None => (last.to_string(), 0),
    };
    let (offset, size) = (offset?, size?);
    // An event fits in a ring-buffer page, and an array's elements in its size: anything else
    // is not a format file the kernel wrote (and would cost memory per element).
    if offset > MAX_EVENT_BYTES || size > MAX_EVENT_BYTES || array_len > size {
        return None;
    }
    let ctype = if array_len > 0 {
        format!("{ctype}[]")
    } else {
        ctype.to_string()
    };
    Some(Field {
        name,
        ctype,
        offset,
        size,
        signed,
        data_loc,
        array_len,
    })
}

/// Size of the ring buffer's data area per page, from `events/header_page`
/// (`field: char data; offset:16; size:4080;`).
pub fn page_data(header_page: &str) -> Option<(usize, usize)> {
    let line = header_page.lines().find(|l| l.contains(" data;"))?;
    let f = parse_field(line.trim())?;
    Some((f.offset, f.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "name: block_rq_issue\nID: 2104\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:char rwbs[10];\toffset:34;\tsize:10;\tsigned:0;\n\tfield:__data_loc char[] cmd;\toffset:60;\tsize:4;\tsigned:0;\n\tfield:long id;\toffset:64;\tsize:8;\tsigned:1;\n\nprint fmt: \"%d\", REC->dev\n";

    #[test]
    fn parses_scalars_arrays_and_data_loc() {
        let f = parse("block", BLOCK).unwrap();
        assert_eq!(
            (f.name.as_str(), f.id, f.fields.len()),
            ("block_rq_issue", 2104, 4)
        );
        let rwbs = f.field("rwbs").unwrap();
        assert_eq!(
            (rwbs.offset, rwbs.size, rwbs.array_len, rwbs.is_string()),
            (34, 10, 10, true)
        );
        let cmd = f.field("cmd").unwrap();
        assert!(cmd.data_loc && cmd.is_string());
        assert!(f.field("id").unwrap().signed);
        assert!(!f.field("dev").unwrap().is_string());
    }

    #[test]
    fn reads_page_layout() {
        let hp = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n";
        assert_eq!(page_data(hp), Some((16, 4080)));
    }
}

#[cfg(test)]
mod live_tests {
    #[test]
    fn reads_this_kernels_page_layout() {
        let path = std::path::Path::new("/sys/kernel/tracing/events/header_page");
        let Ok(hp) = super::super::tracefs::read_text(path) else {
            perfpack_schema::skip::skip("PERFPACK_REQUIRE_RECORDING", "tracefs not mounted");
            return;
        };
        let (off, size) = super::page_data(&hp).unwrap_or_else(|| panic!("{hp:?}"));
        assert!(off >= 16 && size >= 4000, "{off} {size}");
    }
}
