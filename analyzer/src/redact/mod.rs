//! `perfpack redact`: a copy of a bundle safe to attach to a ticket, and `perfpack redact
//! --check`, which says what identifying values a bundle still holds.
//!
//! Redaction is by rule, not by a list of things to remove: every string of every table and of
//! the manifest is replaced by a token unless its column or field is on the keep list below.
//! A token is a prefix (`comm-`, `/redacted/`, `cmdline-`, `host-`, `s-`) and 12 hex digits of
//! the value's SipHash-2-4 keyed by `--salt`: the same value gives the same token in every
//! table, in the manifest, and in every bundle redacted with the same salt, so joins,
//! groupings, comparisons and fleet rankings line up as before. Without a secret salt a short
//! name can be guessed by hashing candidates; with one it cannot.
//!
//! Kept, because they are code or vocabulary, not data about the machine or its users, and the
//! analyzer reads them: symbol names, build ids, frame kinds, event, tracepoint, syscall,
//! counter, register and kernel function names, block device names and numbers, request
//! flags, thread states, phases, unwind methods, config keys (not mount points), the recorder's
//! flags, the kernel release, architecture and CPU model, source names and statuses, and, among
//! names, the idle tasks (`swapper`, `swapper/N`, `<idle>`), pseudo-paths in brackets
//! (`[kernel.kallsyms]`, `[vdso]`) and JIT symbol maps `/tmp/perf-PID.map` (only a pid).
//!
//! Free text (config values, the sources' reasons and details, the recorder's arguments) is
//! redacted word by word: paths, the host's names and boot id, IP and MAC addresses and UUIDs
//! become tokens; other words stay. `--comm`, `--paths` and `--cmdline` choose among thread
//! names, paths and command lines (all three without any); the host's identity and every
//! string outside the keep list are always replaced.

use std::collections::HashMap;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::cast::AsArray as _;
use arrow_array::{Array, ArrayRef, MapArray, RecordBatch, StringArray, StructArray};
use arrow_schema::DataType;
use perfpack_schema::manifest::TableEntry;
use perfpack_schema::{Bundle, BundleWriter, Manifest, WriterOptions, tables};

pub mod check;

/// What `perfpack redact` does: replace names in a copy, or (`check`) list what is left.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The bundle to redact or check (directory or packed file).
    pub bundle: PathBuf,
    /// The redacted bundle directory to write (required without `check`).
    pub output: Option<PathBuf>,
    /// Replace thread and process names.
    pub comm: bool,
    /// Replace file paths.
    pub paths: bool,
    /// Replace process command lines.
    pub cmdline: bool,
    /// A secret mixed into the hashes.
    pub salt: String,
    /// Replace an existing output.
    pub force: bool,
    /// Write nothing: list the identifying values the bundle still holds.
    pub check: bool,
}

/// What a value is, for its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum What {
    Comm,
    Path,
    Cmdline,
    /// The machine's identity: host name, boot id, instance type.
    Host,
    /// Any other string outside the keep list.
    Other,
}

impl What {
    fn prefix(self) -> &'static str {
        match self {
            What::Comm => "comm-",
            What::Path => "/redacted/",
            What::Cmdline => "cmdline-",
            What::Host => "host-",
            What::Other => "s-",
        }
    }

    fn label(self) -> &'static str {
        match self {
            What::Comm => "thread names",
            What::Path => "paths",
            What::Cmdline => "command lines",
            What::Host => "host identity",
            What::Other => "other strings",
        }
    }
}

/// Whether `s` is a token already (redacting twice changes nothing).
fn is_token(s: &str) -> bool {
    [
        What::Comm,
        What::Path,
        What::Cmdline,
        What::Host,
        What::Other,
    ]
    .iter()
    .any(|w| {
        s.strip_prefix(w.prefix())
            .is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// How a string column or manifest field is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// On the keep list.
    Keep,
    /// Replaced by a token of this kind.
    Token(What),
    /// Free text: redacted word by word.
    Text,
    /// The recorder's command line: one argument.
    Arg,
}

/// Replaces strings by their tokens, remembering each one.
pub struct Redactor {
    /// What was replaced beyond the host's identity and unknown strings.
    pub comm: bool,
    pub paths: bool,
    pub cmdline: bool,
    key: (u64, u64),
    memo: HashMap<(What, String), String>,
    /// The host's names and boot id, replaced wherever they appear as words.
    identity: Vec<String>,
}

impl Redactor {
    fn new(a: &Options, manifest: &Manifest) -> Redactor {
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
            identity: identity(manifest),
        }
    }

    fn enabled(&self, what: What) -> bool {
        match what {
            What::Comm => self.comm,
            What::Path => self.paths,
            What::Cmdline => self.cmdline,
            What::Host | What::Other => true,
        }
    }

    /// The token of `s`, or `s` itself where it is kept.
    fn token(&mut self, what: What, s: &str) -> String {
        if !self.enabled(what) || s.is_empty() || kept(what, s) || is_token(s) {
            return s.to_string();
        }
        if let Some(t) = self.memo.get(&(what, s.to_string())) {
            return t.clone();
        }
        let mut h = siphasher::sip::SipHasher24::new_with_keys(self.key.0, self.key.1);
        h.write(s.as_bytes());
        let t = format!("{}{:012x}", what.prefix(), h.finish() >> 16);
        self.memo.insert((what, s.to_string()), t.clone());
        t
    }

    fn apply(&mut self, rule: Rule, s: &str) -> String {
        match rule {
            Rule::Keep => s.to_string(),
            Rule::Token(what) => self.token(what, s),
            Rule::Text => self.text(s),
            Rule::Arg => self.arg(s),
        }
    }

    /// Free text, word by word.
    fn text(&mut self, s: &str) -> String {
        s.split(' ')
            .map(|w| self.word(w))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// One word of free text: a path (`/x`, `root=/dev/x`, `(/dev/x)`) becomes a path token;
    /// the host's names and boot id, addresses and UUIDs become tokens; other words stay.
    fn word(&mut self, word: &str) -> String {
        if word.is_empty() || is_token(word) {
            return word.to_string();
        }
        // `key=` or `(` before the value, closing punctuation after it.
        let (pre, rest) = match word.find(['=', '(']) {
            Some(i)
                if word[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') =>
            {
                word.split_at(i + 1)
            }
            _ => ("", word),
        };
        let core = rest.trim_end_matches([')', ',', ';', ':', '"', '\'']);
        let post = &rest[core.len()..];
        let core_replaced = if core.contains('/') {
            self.token(What::Path, core)
        } else if self.identity.iter().any(|i| i.eq_ignore_ascii_case(core)) {
            self.token(What::Host, core)
        } else if identifying(core).is_some() {
            self.token(What::Other, core)
        } else if let Some(i) = core.find(['=', '(']) {
            // `root=UUID=…`, `f(x)`: what follows by the same rule (each step is shorter).
            format!("{}{}", &core[..=i], self.word(&core[i + 1..]))
        } else {
            core.to_string()
        };
        format!("{pre}{core_replaced}{post}")
    }

    /// One argument of the recorder's command line: flags stay (a `--flag=value` keeps the
    /// flag), values are words of free text.
    fn arg(&mut self, s: &str) -> String {
        if let Some(flag) = s.strip_prefix("--")
            && let Some((name, value)) = flag.split_once('=')
        {
            return format!("--{name}={}", self.text(value));
        }
        if s.starts_with('-') && !s.contains(['/', ' ']) {
            return s.to_string();
        }
        self.text(s)
    }

    fn strings(&mut self, rule: Rule, a: &ArrayRef) -> anyhow::Result<ArrayRef> {
        let Some(s) = a.as_string_opt::<i32>() else {
            bail!("expected a string column, found {}", a.data_type());
        };
        let out: StringArray = s.iter().map(|v| v.map(|v| self.apply(rule, v))).collect();
        Ok(Arc::new(out))
    }

    /// `str_fields` of ftrace events: values redacted by what their key names.
    fn fields(&mut self, a: &ArrayRef) -> anyhow::Result<ArrayRef> {
        let Some(m) = a.as_map_opt() else {
            bail!("expected a map column, found {}", a.data_type());
        };
        let Some(keys) = m.keys().as_string_opt::<i32>() else {
            bail!("expected a map with string keys, found {}", a.data_type());
        };
        let Some(values) = m.values().as_string_opt::<i32>() else {
            // Numbers (`int_fields`) name nothing.
            return Ok(a.clone());
        };
        let out: StringArray = (0..values.len())
            .map(|i| {
                if values.is_null(i) {
                    return None;
                }
                Some(self.apply(field_rule(keys.value(i)), values.value(i)))
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

/// The host's names (the whole host name and its first label) and boot id, unless tokens.
fn identity(m: &Manifest) -> Vec<String> {
    let h = &m.host;
    let mut v = vec![h.hostname.clone()];
    if let Some(first) = h.hostname.split('.').next() {
        v.push(first.to_string());
    }
    v.extend(h.boot_id.clone());
    v.retain(|s| !s.is_empty() && !is_token(s));
    v.sort();
    v.dedup();
    v
}

/// Values that name no user data and that the analyzer recognizes.
fn kept(what: What, s: &str) -> bool {
    match what {
        What::Comm => s == "swapper" || s.starts_with("swapper/") || s == "<idle>",
        What::Path => {
            (s.starts_with('[') && s.ends_with(']'))
                || s == "//anon"
                || s.strip_prefix("/tmp/perf-")
                    .and_then(|r| r.strip_suffix(".map"))
                    .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        }
        What::Cmdline | What::Host | What::Other => false,
    }
}

/// The rule of a string column: the keep list, the columns of names, paths and command lines,
/// and everything else a token.
fn column_rule(table: &str, column: &str) -> Rule {
    use What::*;
    match (table, column) {
        (_, "comm" | "prev_comm" | "next_comm" | "child_comm" | "parent_comm") => Rule::Token(Comm),
        ("frame", "module" | "file")
        | ("mapping", "path")
        | ("thread", "exe")
        | ("cgroup", "path") => Rule::Token(Path),
        ("sched_process", "filename") => Rule::Token(Path),
        ("thread", "cmdline") => Rule::Token(Cmdline),
        ("frame", "name" | "build_id" | "kind")
        | ("stack_sample", "event" | "unwind")
        | ("thread", "reason")
        | ("mapping", "build_id")
        | ("ftrace_event", "event")
        | ("sample_field", "event")
        | ("block_rq", "phase" | "dev" | "disk" | "rwbs")
        | ("sched_switch", "prev_state")
        | ("syscall", "phase" | "name")
        | ("sched_process", "event")
        | ("func_count" | "func_graph", "function")
        | ("pmc", "event")
        | ("msr", "name" | "source")
        | ("sys_counter", "source" | "name" | "instance" | "kind") => Rule::Keep,
        _ => Rule::Token(Other),
    }
}

/// The rule of a tracepoint's string field, by its name.
fn field_rule(key: &str) -> Rule {
    if key.contains("comm") {
        Rule::Token(What::Comm)
    } else if matches!(key, "filename" | "pathname" | "path" | "file") {
        Rule::Token(What::Path)
    } else if matches!(key, "rwbs" | "reason" | "func" | "function") {
        Rule::Keep
    } else {
        Rule::Token(What::Other)
    }
}

/// What kind of address or id `word` holds, if any: an IPv4 or IPv6 address, a MAC address,
/// a UUID.
fn identifying(word: &str) -> Option<&'static str> {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != ':' && c != '.');
    // IPv4, possibly with a port: four numbers of 0..=255.
    let host = w.split(':').next().unwrap_or(w);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
    {
        return Some("IP addresses");
    }
    let hex_groups = |sep: char| -> Vec<&str> { w.split(sep).collect() };
    let all_hex = |g: &[&str]| g.iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()));
    // MAC: six groups of two hex digits.
    let g = hex_groups(':');
    if g.len() == 6 && g.iter().all(|p| p.len() == 2) && all_hex(&g) {
        return Some("MAC addresses");
    }
    // IPv6: hex groups of at most 4 digits, at least three colons (or `::`), with a digit.
    if (g.len() >= 4 || w.contains("::"))
        && g.len() <= 8
        && g.iter().all(|p| p.len() <= 4)
        && all_hex(&g)
        && w.bytes().any(|b| b.is_ascii_digit())
        && g.iter().filter(|p| !p.is_empty()).count() >= 2
    {
        return Some("IP addresses");
    }
    // UUID: 8-4-4-4-12 hex.
    let u = hex_groups('-');
    if u.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && all_hex(&u) {
        return Some("UUIDs");
    }
    None
}

/// Calls `f` with the rule and a mutable reference of every string of the manifest, so that
/// redaction and `--check` walk the same fields.
fn manifest_strings(m: &mut Manifest, mut f: impl FnMut(&str, Rule, &mut String)) {
    f("bundle_id", Rule::Token(What::Other), &mut m.bundle_id);
    f("recorder.name", Rule::Keep, &mut m.recorder.name);
    f("recorder.version", Rule::Keep, &mut m.recorder.version);
    let mut after_dashes = false;
    for (i, arg) in m.recorder.command_line.iter_mut().enumerate() {
        // The program, then its arguments; after `--`, the recorded command's own.
        let rule = if i == 0 {
            Rule::Text
        } else if after_dashes {
            Rule::Token(What::Cmdline)
        } else {
            Rule::Arg
        };
        after_dashes |= arg == "--";
        f("recorder.command_line", rule, arg);
    }
    let h = &mut m.host;
    f("host.hostname", Rule::Token(What::Host), &mut h.hostname);
    f("host.kernel_release", Rule::Keep, &mut h.kernel_release);
    f("host.arch", Rule::Keep, &mut h.arch);
    for (name, rule, v) in [
        ("host.boot_id", Rule::Token(What::Host), &mut h.boot_id),
        (
            "host.instance_type",
            Rule::Token(What::Host),
            &mut h.instance_type,
        ),
        ("host.cpu_vendor", Rule::Keep, &mut h.cpu_vendor),
        ("host.cpu_model_name", Rule::Keep, &mut h.cpu_model_name),
    ] {
        if let Some(v) = v {
            f(name, rule, v);
        }
    }
    for s in &mut m.sources {
        f("sources.name", Rule::Keep, &mut s.name);
        f("sources.reason", Rule::Text, &mut s.reason);
        f("sources.detail", Rule::Text, &mut s.detail);
        for l in &mut s.losses {
            f("sources.losses.kind", Rule::Keep, &mut l.kind);
        }
        for u in &mut s.unwind {
            f("sources.unwind.comm", Rule::Token(What::Comm), &mut u.comm);
        }
    }
}

/// The `config` table: keys stay but for mount points; values are free text.
fn redact_config(r: &mut Redactor, batch: RecordBatch) -> anyhow::Result<RecordBatch> {
    let (Some(keys), Some(values)) = (
        batch.column(0).as_string_opt::<i32>(),
        batch.column(1).as_string_opt::<i32>(),
    ) else {
        bail!("config: expected two string columns");
    };
    let (mut k, mut v): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for i in 0..batch.num_rows() {
        let key = keys.value(i);
        k.push(match key.strip_prefix("mount.") {
            Some(at) => format!("mount.{}", r.token(What::Path, at)),
            None => key.to_string(),
        });
        v.push(r.text(values.value(i)));
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
        return redact_config(r, batch);
    }
    let schema = batch.schema();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (i, f) in schema.fields().iter().enumerate() {
        if matches!(f.data_type(), DataType::Map(..)) {
            columns[i] = r.fields(&columns[i])?;
        } else if f.data_type() == &DataType::Utf8 {
            let rule = column_rule(table, f.name());
            if rule != Rule::Keep {
                columns[i] = r.strings(rule, &columns[i])?;
            }
        }
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Writes the redacted copy of `bundle` to `out`.
pub fn write(bundle: &Bundle, a: &Options, out: &Path) -> anyhow::Result<Redactor> {
    let src = bundle.manifest();
    let mut r = Redactor::new(a, src);
    let mut manifest = src.clone();
    manifest_strings(&mut manifest, |_, rule, v| *v = r.apply(rule, v));
    for t in manifest.tables.values_mut() {
        *t = TableEntry::default();
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
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(salt: &str) -> Options {
        Options {
            bundle: "b".into(),
            output: Some("o".into()),
            comm: false,
            paths: false,
            cmdline: false,
            salt: salt.into(),
            force: false,
            check: false,
        }
    }

    fn manifest() -> Manifest {
        let mut m = Manifest::new(
            "b".into(),
            Default::default(),
            perfpack_schema::manifest::Host {
                hostname: "db-7.prod.example.com".into(),
                boot_id: Some("3f0c9a52-1d2e-4b7f-9a10-6c5d4e3f2a1b".into()),
                ..Default::default()
            },
            Default::default(),
        );
        m.recorder.command_line = ["perfpack-record", "-d", "30s", "-o", "/home/alice/x.ppk"]
            .map(String::from)
            .into();
        m
    }

    fn redactor(salt: &str) -> Redactor {
        Redactor::new(&args(salt), &manifest())
    }

    #[test]
    fn tokens_are_stable_salted_and_keep_what_names_nothing() {
        let mut a = redactor("");
        let mut b = redactor("");
        let mut salted = redactor("secret");
        let t = a.token(What::Comm, "postgres");
        assert_eq!(t, b.token(What::Comm, "postgres"));
        assert!(t.starts_with("comm-") && t.len() == 17, "{t}");
        assert_ne!(t, salted.token(What::Comm, "postgres"));
        assert_ne!(t, a.token(What::Comm, "postgrez"));
        assert_eq!(a.token(What::Comm, "swapper/3"), "swapper/3");
        assert_eq!(a.token(What::Path, "[vdso]"), "[vdso]");
        assert_eq!(a.token(What::Path, "/tmp/perf-12.map"), "/tmp/perf-12.map");
        assert!(a.token(What::Path, "/usr/bin/x").starts_with("/redacted/"));
        let v = a.text("BOOT_IMAGE=/vmlinuz ro quiet root=/dev/vda1");
        assert!(
            v.starts_with("BOOT_IMAGE=/redacted/") && v.contains(" ro quiet root=/redacted/"),
            "{v}"
        );
        let v = a.text("ext4 rw,relatime (/dev/vda1)");
        assert!(
            v.starts_with("ext4 rw,relatime (/redacted/") && v.ends_with(')'),
            "{v}"
        );
    }

    #[test]
    fn free_text_loses_addresses_ids_and_the_hosts_names_and_keeps_its_words() {
        let mut r = redactor("");
        let host = r.token(What::Host, "db-7");
        let v = r.text("root=UUID=77aa9a52-1d2e-4b7f-9a10-6c5d4e3f2a1b ro db-7 at 10.0.0.7:5432 via 02:42:ac:11:00:02 and fe80::1");
        assert!(v.starts_with("root=UUID=s-") && v.contains(" ro "), "{v}");
        assert!(v.contains(&format!(" {host} at s-")), "{v}");
        for gone in ["77aa9a52", "db-7 ", "10.0.0.7", "02:42", "fe80"] {
            assert!(!v.contains(gone), "{gone} in {v}");
        }
        // A token is not hashed again.
        assert_eq!(r.text(&v), v);
        // The recorder's flags stay; their values are free text.
        assert_eq!(r.arg("--preset"), "--preset");
        assert_eq!(r.arg("30s"), "30s");
        assert!(
            r.arg("--output=/home/alice/x.ppk")
                .starts_with("--output=/redacted/")
        );
        // Code stays: C++ names are not taken for IPv6 addresses.
        assert_eq!(identifying("std::map"), None);
        assert_eq!(identifying("a::b"), None);
        assert_eq!(identifying("10.0.0.256"), None);
        assert_eq!(identifying("1.2.3.4:80"), Some("IP addresses"));
    }

    #[test]
    fn every_string_of_the_manifest_is_on_the_keep_list_or_replaced() {
        let mut m = manifest();
        let mut r = redactor("");
        manifest_strings(&mut m, |_, rule, v| *v = r.apply(rule, v));
        let json = m.to_json();
        for gone in ["db-7", "example.com", "3f0c9a52", "alice"] {
            assert!(!json.contains(gone), "{gone} in {json}");
        }
        assert!(m.host.hostname.starts_with("host-"));
        assert_eq!(m.recorder.command_line[1..3], ["-d", "30s"]);
    }
}
