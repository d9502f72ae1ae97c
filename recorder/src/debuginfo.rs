//! Inlined frames and source lines from DWARF, with addr2line (gimli underneath): in the binary
//! itself, in its `.gnu_debuglink` file (next to it, in its `.debug/`, or under
//! `/usr/lib/debug/DIR/`), or in `/usr/lib/debug/.build-id/xx/yyyy.debug`. A debug file is used
//! only when it is the binary's: same build id, or, without one, the CRC the debuglink names
//! (the link's file name comes from a file the recorded processes control). Sections are read in
//! place from the mapped file; compressed ones are decompressed once.

use std::sync::Arc;

use object::{Object, ObjectSection};

use crate::bytes::{FileBytes, Section};
use crate::sys::MappedFile;

type Reader = gimli::EndianReader<gimli::RunTimeEndian, Section>;

/// The most frames one address expands to (inlining depth), as a bound on hostile DWARF.
const MAX_INLINE: usize = 32;

/// One function at an address: the innermost (inlined) first, the real function last. The name
/// is as the DWARF has it (mangled for C++ and Rust).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFrame {
    pub name: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// The DWARF of one binary.
pub struct DebugInfo {
    ctx: addr2line::Context<Reader>,
}

impl std::fmt::Debug for DebugInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DebugInfo")
    }
}

/// What is known of the binary whose debug info is looked for.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// The binary's own path.
    pub path: String,
    /// Its GNU build id (raw bytes).
    pub build_id: Option<Vec<u8>>,
    /// Whether the binary itself has `.debug_info`.
    pub has_dwarf: bool,
    /// Its `.gnu_debuglink`: file name and CRC-32.
    pub debuglink: Option<(String, u32)>,
}

/// Where a debug file of the build id `hex` is installed (`debuginfod` and Debian's dbgsym
/// packages put it there).
pub fn build_id_debug_path(hex: &str) -> Option<String> {
    (hex.len() > 2).then(|| format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]))
}

fn open(path: &str) -> Option<Arc<FileBytes>> {
    MappedFile::open(path)
        .ok()
        .map(|m| Arc::new(FileBytes::Mapped(m)))
}

fn build_id_of(bytes: &[u8]) -> Option<Vec<u8>> {
    let f = object::File::parse(bytes).ok()?;
    f.build_id().ok().flatten().map(<[u8]>::to_vec)
}

impl DebugInfo {
    /// The debug info of `w`, where there is any.
    pub fn find(w: &Wanted) -> Option<DebugInfo> {
        if w.has_dwarf {
            return Self::parse(open(&w.path)?).ok();
        }
        let matches =
            |bytes: &Arc<FileBytes>, crc: Option<u32>| match (&w.build_id, build_id_of(bytes)) {
                (Some(a), Some(b)) => *a == b,
                _ => crc.is_some_and(|c| perfpack_schema::pack::crc32(bytes) == c),
            };
        let hex = |id: &Vec<u8>| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        if let Some(p) = w
            .build_id
            .as_ref()
            .and_then(|id| build_id_debug_path(&hex(id)))
            && let Some(bytes) = open(&p).filter(|b| matches(b, None))
        {
            return Self::parse(bytes).ok();
        }
        let (name, crc) = w.debuglink.as_ref()?;
        // A plain file name only: the link must not lead the recorder elsewhere.
        if name.is_empty() || name.contains('/') || name == ".." {
            return None;
        }
        let dir = std::path::Path::new(&w.path).parent()?.to_str()?;
        for p in [
            format!("{dir}/{name}"),
            format!("{dir}/.debug/{name}"),
            format!("/usr/lib/debug{dir}/{name}"),
        ] {
            if p == w.path {
                continue;
            }
            if let Some(bytes) = open(&p).filter(|b| matches(b, Some(*crc))) {
                return Self::parse(bytes).ok();
            }
        }
        None
    }

    /// Reads the DWARF sections of an ELF file (given as bytes: the fuzz target's way in too).
    pub fn parse(bytes: Arc<FileBytes>) -> Result<DebugInfo, String> {
        let elf = object::File::parse(&**bytes).map_err(|e| e.to_string())?;
        let endian = if elf.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let len = bytes.len() as u64;
        let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data = match elf.section_by_name(id.name()) {
                None => Section::owned(Vec::new()),
                Some(s) => match s.compressed_file_range() {
                    Ok(r) if r.format == object::CompressionFormat::None => {
                        match r.offset.checked_add(r.uncompressed_size) {
                            Some(end) if end <= len => {
                                Section::new(&bytes, r.offset as usize..end as usize)
                            }
                            _ => Section::owned(Vec::new()),
                        }
                    }
                    // Compressed (or odd): decompressed once; a section that does not
                    // decompress is treated as absent.
                    _ => Section::owned(
                        s.uncompressed_data()
                            .map(|d| d.into_owned())
                            .unwrap_or_default(),
                    ),
                },
            };
            Ok(gimli::EndianReader::new(data, endian))
        };
        let dwarf = gimli::Dwarf::load(load).map_err(|e| e.to_string())?;
        let ctx = addr2line::Context::from_dwarf(dwarf).map_err(|e| e.to_string())?;
        Ok(DebugInfo { ctx })
    }

    /// The functions at `svma` (an address as the ELF file states it), innermost first; empty
    /// where the DWARF says nothing of it.
    pub fn frames(&self, svma: u64) -> Vec<InlineFrame> {
        let mut out = Vec::new();
        let Ok(mut it) = self.ctx.find_frames(svma).skip_all_loads() else {
            return out;
        };
        while out.len() < MAX_INLINE {
            let Ok(Some(f)) = it.next() else { break };
            let name = f
                .function
                .as_ref()
                .and_then(|n| n.raw_name().ok())
                .map(|n| n.into_owned());
            let (file, line) = match &f.location {
                Some(l) => (l.file.map(str::to_string), l.line),
                None => (None, None),
            };
            out.push(InlineFrame { name, file, line });
        }
        out
    }
}
