//! `perfpack redact`: a copy of a bundle with thread names, file paths and command lines
//! replaced by stable hashes, so that it can be attached to a ticket without leaking them.
//!
//! Each string is replaced by `comm-…`, `/redacted/…` or `cmdline-…` followed by 12 hex digits
//! of its SipHash-2-4, keyed by `--salt`: the same name gives the same token in every table and
//! in every bundle redacted with the same salt, so joins, groupings, comparisons and fleet
//! rankings line up as before. Without a secret salt a short name can be guessed by hashing
//! candidates; with one it cannot.
//!
//! Left as they are, because they name no user data and the analyzer reads them: the idle
//! tasks (`swapper`, `swapper/N`, `<idle>`), pseudo-paths in brackets (`[kernel.kallsyms]`,
//! `[vdso]`, `[jit]`) and JIT symbol maps `/tmp/perf-PID.map` (only a pid). Symbol names are
//! code, not data, and stay.

use std::collections::HashMap;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::cast::AsArray as _;
use arrow_array::{Array, ArrayRef, MapArray, RecordBatch, StringArray, StructArray};
use perfpack_schema::manifest::TableEntry;

use perfpack_schema::{Bundle, BundleWriter, WriterOptions, tables};

/// Arguments of `perfpack redact`.
#[derive(Debug, clap::Args)]
pub struct RedactArgs {
    /// The bundle to redact (directory or packed file)
    pub bundle: PathBuf,
    /// The redacted bundle directory to write
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace thread and process names
    #[arg(long)]
    pub comm: bool,
    /// Replace file paths (modules, mappings, executables, exec'd files, source files)
    #[arg(long)]
    pub paths: bool,
    /// Replace process command lines (and the recorder's own arguments that are paths)
    #[arg(long)]
    pub cmdline: bool,
    /// A secret mixed into the hashes: without it, anyone can check a guessed name
    #[arg(long, default_value = "")]
    pub salt: String,
    /// Replace an existing output
    #[arg(long)]
    pub force: bool,
}

/// What a column holds, for redaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum What {
    Comm,
    Path,
    Cmdline,
}

/// Replaces strings by their tokens, remembering each one.
struct Redactor {
    comm: bool,
    paths: bool,
    cmdline: bool,
    key: (u64, u64),
    memo: HashMap<(What, String), String>,
}

impl Redactor {
    fn new(a: &RedactArgs) -> Redactor {
        // Without any flag, everything: the safe default for a bundle about to leave the box.
        let all = !(a.comm || a.paths || a.cmdline);
        let mut h = siphasher::sip::SipHasher24::new_with_keys(0x7065_7266, 0x7061_636b);
        h.write(a.salt.as_bytes());
        let k0 = h.finish();
        h.write_u8(1);
        Redactor {
            comm: a.comm || all,
            paths: a.paths || all,
            cmdline: a.cmdline || all,
            key: (k0, h.finish()),
            memo: HashMap::new(),
        }
    }

    fn enabled(&self, what: What) -> bool {
        match what {
            What::Comm => self.comm,
            What::Path => self.paths,
            What::Cmdline => self.cmdline,
        }
    }

    /// The token of `s`, or `s` itself where it is kept.
    fn token(&mut self, what: What, s: &str) -> String {
        if !self.enabled(what) || s.is_empty() || kept(what, s) {
            return s.to_string();
        }
        if let Some(t) = self.memo.get(&(what, s.to_string())) {
            return t.clone();
        }
        let mut h = siphasher::sip::SipHasher24::new_with_keys(self.key.0, self.key.1);
        h.write(s.as_bytes());
        let x = h.finish() >> 16;
        let t = match what {
            What::Comm => format!("comm-{x:012x}"),
            What::Path => format!("/redacted/{x:012x}"),
            What::Cmdline => format!("cmdline-{x:012x}"),
        };
        self.memo.insert((what, s.to_string()), t.clone());
        t
    }

    fn strings(&mut self, what: What, a: &ArrayRef) -> anyhow::Result<ArrayRef> {
        let Some(s) = a.as_string_opt::<i32>() else {
            bail!("expected a string column, found {}", a.data_type());
        };
        let out: StringArray = s.iter().map(|v| v.map(|v| self.token(what, v))).collect();
        Ok(Arc::new(out))
    }

    /// `str_fields` of ftrace events: values redacted by what their key names.
    fn fields(&mut self, a: &ArrayRef) -> anyhow::Result<ArrayRef> {
        let Some(m) = a.as_map_opt() else {
            bail!("expected a map column, found {}", a.data_type());
        };
        let keys = m.keys().as_string::<i32>();
        let values = m.values().as_string::<i32>();
        let out: StringArray = (0..values.len())
            .map(|i| {
                if values.is_null(i) {
                    return None;
                }
                let v = values.value(i);
                Some(match field_kind(keys.value(i)) {
                    Some(what) => self.token(what, v),
                    None => v.to_string(),
                })
            })
            .collect();
        let entries = m.entries();
        let (fields, mut columns, nulls) = entries.clone().into_parts();
        columns[1] = Arc::new(out);
        let entries = StructArray::try_new(fields, columns, nulls)?;
        let (field, offsets, _, nulls, ordered) = m.clone().into_parts();
        Ok(Arc::new(MapArray::try_new(
            field, offsets, entries, nulls, ordered,
        )?))
    }
}

/// Values that name no user data and that the analyzer recognizes.
fn kept(what: What, s: &str) -> bool {
    match what {
        What::Comm => s == "swapper" || s.starts_with("swapper/") || s == "<idle>",
        What::Path => {
            (s.starts_with('[') && s.ends_with(']'))
                || s.strip_prefix("/tmp/perf-")
                    .and_then(|r| r.strip_suffix(".map"))
                    .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        }
        What::Cmdline => false,
    }
}

/// What a column of a table holds.
fn column_kind(table: &str, column: &str) -> Option<What> {
    match (table, column) {
        (_, "comm" | "prev_comm" | "next_comm" | "child_comm" | "parent_comm") => Some(What::Comm),
        ("frame", "module" | "file") | ("mapping", "path") | ("thread", "exe") => Some(What::Path),
        ("sched_process", "filename") => Some(What::Path),
        ("thread", "cmdline") => Some(What::Cmdline),
        _ => None,
    }
}

/// What a string field of a tracepoint holds, by its name.
fn field_kind(key: &str) -> Option<What> {
    if key.contains("comm") {
        Some(What::Comm)
    } else if matches!(key, "filename" | "pathname" | "path" | "file") {
        Some(What::Path)
    } else {
        None
    }
}

/// A configuration value with every path in it replaced (`root=/dev/x`, `(/dev/x)`, `/x`).
fn config_value(r: &mut Redactor, v: &str) -> String {
    v.split(' ')
        .map(|word| {
            if !word.contains('/') {
                return word.to_string();
            }
            let (pre, rest) = match word.find(['=', '(']) {
                Some(i)
                    if word[..i]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    word.split_at(i + 1)
                }
                _ => ("", word),
            };
            let (path, post) = match rest.strip_suffix(')') {
                Some(p) => (p, ")"),
                None => (rest, ""),
            };
            format!("{pre}{}{post}", r.token(What::Path, path))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `config` table: mount points in keys, and paths in values, under `--paths`.
fn redact_config(r: &mut Redactor, batch: RecordBatch) -> anyhow::Result<RecordBatch> {
    let keys = batch.column(0).as_string::<i32>();
    let values = batch.column(1).as_string::<i32>();
    let (mut k, mut v): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for i in 0..batch.num_rows() {
        let key = keys.value(i);
        k.push(match key.strip_prefix("mount.") {
            Some(at) => format!("mount.{}", r.token(What::Path, at)),
            None => key.to_string(),
        });
        v.push(config_value(r, values.value(i)));
    }
    Ok(RecordBatch::try_new(
        batch.schema(),
        vec![
            Arc::new(StringArray::from(k)),
            Arc::new(StringArray::from(v)),
        ],
    )?)
}

fn redact_batch(r: &mut Redactor, table: &str, batch: RecordBatch) -> anyhow::Result<RecordBatch> {
    if table == "config" {
        return if r.paths {
            redact_config(r, batch)
        } else {
            Ok(batch)
        };
    }
    let schema = batch.schema();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (i, f) in schema.fields().iter().enumerate() {
        if table == "ftrace_event" && f.name() == "str_fields" {
            columns[i] = r.fields(&columns[i])?;
        } else if let Some(what) = column_kind(table, f.name())
            && r.enabled(what)
        {
            columns[i] = r.strings(what, &columns[i])?;
        }
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

pub fn run(a: RedactArgs) -> anyhow::Result<()> {
    let bundle = Bundle::open(&a.bundle)?;
    bundle.verify()?;
    if a.output.canonicalize().ok() == a.bundle.canonicalize().ok() {
        bail!(
            "{}: the output would replace the bundle itself",
            a.output.display()
        );
    }
    // Written next to the output and moved into place at the end: a failure leaves the output
    // path as it was.
    let staged = crate::staged::Staged::new(&a.output, a.force, "redact")?;
    write(&bundle, &a, staged.path())?;
    staged.commit()?;
    let r = Redactor::new(&a);
    let mut what = Vec::new();
    for (on, name) in [
        (r.comm, "thread names"),
        (r.paths, "paths"),
        (r.cmdline, "command lines"),
    ] {
        if on {
            what.push(name);
        }
    }
    eprintln!(
        "perfpack: wrote {} with {} replaced by stable hashes{}",
        a.output.display(),
        what.join(", "),
        if a.salt.is_empty() {
            " (no --salt: a guessed name can be checked against them)"
        } else {
            ""
        }
    );
    Ok(())
}

fn write(bundle: &Bundle, a: &RedactArgs, out: &Path) -> anyhow::Result<()> {
    let mut r = Redactor::new(a);
    let src = bundle.manifest();
    let mut manifest = src.clone();
    manifest.bundle_id = format!("{}-redacted", src.bundle_id);
    for t in manifest.tables.values_mut() {
        *t = TableEntry::default();
    }
    if r.paths || r.cmdline {
        manifest.recorder.command_line = src
            .recorder
            .command_line
            .iter()
            .map(|arg| {
                if arg.contains('/') {
                    r.token(What::Path, arg)
                } else {
                    arg.clone()
                }
            })
            .collect();
    }
    let mut writer = BundleWriter::create(out, manifest, WriterOptions::default())?;
    // Segment by segment, every table's rows of that segment, so segments line up as before.
    let mut indexes: Vec<u32> = tables::ALL
        .iter()
        .flat_map(|t| bundle.segments(t).iter().map(|s| s.index))
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    for index in indexes {
        for t in tables::ALL {
            for seg in bundle.segments(t).iter().filter(|s| s.index == index) {
                let path = bundle.display_path(seg);
                for batch in bundle.open_segment(t, seg)? {
                    let batch = batch
                        .map_err(|e| anyhow::anyhow!("{}: corrupt data: {e}", path.display()))?;
                    let batch = redact_batch(&mut r, t.name, batch)
                        .with_context(|| format!("{}", path.display()))?;
                    writer.append(t, batch)?;
                }
            }
        }
        writer.close_segment()?;
    }
    let end = src.clocks.end;
    let state = src.state;
    let mut written = writer.finish(state, end.unwrap_or(src.clocks.start))?;
    if end.is_none() {
        // The source never recorded its end: neither does the copy.
        written.clocks.end = None;
        let path = out.join(perfpack_schema::MANIFEST_FILE);
        std::fs::write(&path, written.to_json()).with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(salt: &str) -> RedactArgs {
        RedactArgs {
            bundle: "b".into(),
            output: "o".into(),
            comm: false,
            paths: false,
            cmdline: false,
            salt: salt.into(),
            force: false,
        }
    }

    #[test]
    fn tokens_are_stable_salted_and_keep_what_names_nothing() {
        let mut a = Redactor::new(&args(""));
        let mut b = Redactor::new(&args(""));
        let mut salted = Redactor::new(&args("secret"));
        let t = a.token(What::Comm, "postgres");
        assert_eq!(t, b.token(What::Comm, "postgres"));
        assert!(t.starts_with("comm-") && t.len() == 17, "{t}");
        assert_ne!(t, salted.token(What::Comm, "postgres"));
        assert_ne!(t, a.token(What::Comm, "postgrez"));
        assert_eq!(a.token(What::Comm, "swapper/3"), "swapper/3");
        assert_eq!(a.token(What::Path, "[vdso]"), "[vdso]");
        assert_eq!(a.token(What::Path, "/tmp/perf-12.map"), "/tmp/perf-12.map");
        assert!(a.token(What::Path, "/usr/bin/x").starts_with("/redacted/"));
        let v = config_value(&mut a, "BOOT_IMAGE=/vmlinuz ro quiet root=/dev/vda1");
        assert!(
            v.starts_with("BOOT_IMAGE=/redacted/") && v.contains(" ro quiet root=/redacted/"),
            "{v}"
        );
        let v = config_value(&mut a, "ext4 rw,relatime (/dev/vda1)");
        assert!(
            v.starts_with("ext4 rw,relatime (/redacted/") && v.ends_with(')'),
            "{v}"
        );
    }
}
