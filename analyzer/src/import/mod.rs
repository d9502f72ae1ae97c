//! `perfpack import`: existing text captures into bundles. Importers stream their input line by
//! line (files of several GB), write segments as rows accumulate, and count every line they
//! could not parse (with the first few as examples) into the report and the manifest: nothing is
//! dropped silently. A failed import removes the bundle it started.

mod ftrace_text;
mod perf_data;
mod perf_script;
mod stacks;

use std::io::{BufRead, BufReader, Read as _, Write};
use std::path::Path;

use anyhow::Context as _;
use perfpack_schema::manifest::{
    ClockSnapshot, Host, Loss, RecorderInfo, Source, SourceStatus, State, UnwindStat,
};
use perfpack_schema::{BundleWriter, Manifest, WriterOptions};

/// Capture formats `perfpack import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// Text of `perf script` for a `perf record -g` capture.
    PerfScript,
    /// A `perf record` file (perf.data), its frames named from this machine's files.
    PerfData,
    /// Text of ftrace's `trace`/`trace_pipe`, or of `trace-cmd report`.
    FtraceText,
}

/// Rows an importer buffers before it closes a segment.
const SEGMENT_ROWS: usize = 1 << 20;

/// The longest line read (perf script and ftrace lines are well under a kilobyte).
const MAX_LINE_BYTES: usize = 1 << 20;

/// How many unparsed lines are kept as examples.
const MAX_EXAMPLES: usize = 5;

/// What an import did.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines read.
    pub lines: u64,
    /// Records imported (samples or events).
    pub records: u64,
    /// What the records are called in messages.
    pub record_kind: &'static str,
    /// Lines that were neither a record, part of one, nor a header or comment.
    pub unparsed: u64,
    /// `(line number, text)` of the first unparsed lines.
    pub examples: Vec<(u64, String)>,
    /// Facts about the whole input a reader of the bundle must know.
    pub notes: Vec<String>,
    /// Records imported with something missing or unusual, counted per kind (never a property
    /// of the file: 7 odd samples in 182,126 are 7 samples).
    pub oddities: Vec<Oddity>,
    /// Smallest and largest timestamp seen.
    pub ts_range: Option<(i64, i64)>,
    /// Highest CPU number seen.
    pub max_cpu: Option<i32>,
    /// What `lines` counts: text lines, or the records of a binary capture.
    pub input_unit: &'static str,
    /// Losses the capture itself reports: (kind, count).
    pub lost: Vec<(&'static str, u64)>,
    /// How user stacks were unwound at import, per process (perf.data with stack copies).
    pub unwind: Vec<UnwindStat>,
}

/// One kind of odd record: how many, and where the first one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oddity {
    /// What the records are, read after their count ("without a time column: ts_ns is 0").
    pub what: &'static str,
    pub count: u64,
    pub first_line: u64,
}

impl Report {
    /// Counts a record at `line_no` that is `what`.
    fn odd(&mut self, line_no: u64, what: &'static str) {
        match self.oddities.iter_mut().find(|o| o.what == what) {
            Some(o) => o.count += 1,
            None => self.oddities.push(Oddity {
                what,
                count: 1,
                first_line: line_no,
            }),
        }
    }

    /// The notes and the oddities as lines, the way the report and the manifest say them.
    fn note_lines(&self) -> Vec<String> {
        let mut lines = self.notes.clone();
        for o in &self.oddities {
            let kind = self.record_kind;
            lines.push(if o.count == self.records {
                format!("all {} {kind} {}", o.count, o.what)
            } else {
                format!(
                    "{} {kind} {}, first at line {}",
                    o.count, o.what, o.first_line
                )
            });
        }
        lines
    }

    fn unparsed(&mut self, line_no: u64, line: &str) {
        self.unparsed += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples
                .push((line_no, line.chars().take(200).collect()));
        }
    }

    /// A record's time (None where the input has none: it does not move the range) and CPU.
    fn saw(&mut self, ts_ns: Option<i64>, cpu: Option<i32>) {
        if let Some(ts_ns) = ts_ns {
            self.ts_range = Some(match self.ts_range {
                None => (ts_ns, ts_ns),
                Some((a, b)) => (a.min(ts_ns), b.max(ts_ns)),
            });
        }
        if let Some(cpu) = cpu {
            self.max_cpu = Some(self.max_cpu.map_or(cpu, |m| m.max(cpu)));
        }
    }

    fn note(&mut self, note: &str) {
        if !self.notes.iter().any(|n| n == note) {
            self.notes.push(note.to_string());
        }
    }

    /// Prints the outcome for the user.
    pub fn print(&self, out: &mut impl Write, file: &Path, bundle: &Path) -> std::io::Result<()> {
        writeln!(
            out,
            "imported {} {} from {} ({} {}) into {}",
            self.records,
            self.record_kind,
            file.display(),
            self.lines,
            if self.input_unit.is_empty() {
                "lines"
            } else {
                self.input_unit
            },
            bundle.display()
        )?;
        for note in self.note_lines() {
            writeln!(out, "note: {note}")?;
        }
        if self.unparsed > 0 {
            writeln!(
                out,
                "{} lines could not be parsed and were skipped:",
                self.unparsed
            )?;
            for (no, text) in &self.examples {
                writeln!(out, "  line {no}: {text}")?;
            }
        }
        Ok(())
    }
}

/// Reads a text file line by line, lossily decoding bytes that are not UTF-8 (symbol names and
/// comms can hold any byte).
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    line_no: u64,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            buf: Vec::with_capacity(256),
            line_no: 0,
        }
    }

    /// The next line without its line ending, or None at the end. A line longer than
    /// [`MAX_LINE_BYTES`] is an error (the input is not the text it claims to be), so memory
    /// stays bounded whatever the file holds.
    fn next_line(&mut self) -> std::io::Result<Option<std::borrow::Cow<'_, str>>> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        if (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?
            == 0
        {
            return Ok(None);
        }
        self.line_no += 1;
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "longer than {} MiB: not a text capture perfpack imports",
                    MAX_LINE_BYTES >> 20
                ),
            ));
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(Some(String::from_utf8_lossy(&self.buf)))
    }
}

/// Runs an import of `file` into a new bundle directory `out`.
pub fn run(kind: ImportKind, file: &Path, out: &Path, force: bool) -> anyhow::Result<Report> {
    if kind == ImportKind::PerfData {
        return run_perf_data(file, out, force);
    }
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    import(kind, input, file, out, force)
}

/// Imports a `perf record` file (`perf.data`): binary, so read from a file, not a stream.
fn run_perf_data(file: &Path, out: &Path, force: bool) -> anyhow::Result<Report> {
    if file == Path::new("-") {
        anyhow::bail!(
            "-: a perf.data capture is imported from its file (perf record -o FILE), not from stdin"
        );
    }
    let mut f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    if !f.metadata()?.is_file() {
        anyhow::bail!("{}: not a regular file", file.display());
    }
    let (reader, header) = perf_data::check_header(&mut f)
        .and_then(|()| perf_data::guarded(|| perf_data::open(BufReader::with_capacity(1 << 20, f))))
        .with_context(|| format!("{}", file.display()))?;
    write_bundle(
        ImportKind::PerfData,
        file,
        out,
        force,
        header.hostname,
        header.nr_cpus,
        |writer, report| {
            perf_data::guarded(|| perf_data::import(reader, writer, report))
                .with_context(|| format!("{}", file.display()))
        },
    )
}

/// Imports the text `input` (read from `file`, which names the host and the messages) into a
/// new bundle directory `out`.
pub fn import(
    kind: ImportKind,
    input: impl BufRead,
    file: &Path,
    out: &Path,
    force: bool,
) -> anyhow::Result<Report> {
    write_bundle(kind, file, out, force, None, None, |writer, report| {
        let mut lines = Lines::new(input);
        let imported = match kind {
            ImportKind::PerfScript => perf_script::import(&mut lines, writer, report),
            ImportKind::FtraceText => ftrace_text::import(&mut lines, writer, report),
            ImportKind::PerfData => Err(anyhow::anyhow!("perf.data is not text")),
        };
        report.lines = lines.line_no;
        imported.with_context(|| format!("{}: line {}", file.display(), lines.line_no))
    })
}

/// Writes the bundle `out` of an import: a manifest naming the input, what `body` writes, and
/// the source entry with the report's counts. On any failure `out` is as it was.
fn write_bundle(
    kind: ImportKind,
    file: &Path,
    out: &Path,
    force: bool,
    hostname: Option<String>,
    n_cpus: Option<u32>,
    body: impl FnOnce(&mut BundleWriter, &mut Report) -> anyhow::Result<()>,
) -> anyhow::Result<Report> {
    let (source_name, tool) = match kind {
        ImportKind::PerfScript => ("perf-script-import", "perf script text"),
        ImportKind::FtraceText => ("ftrace-text-import", "ftrace text"),
        ImportKind::PerfData => ("perf-data-import", "perf record file"),
    };
    let hostname = hostname.unwrap_or_else(|| {
        file.file_stem()
            .map_or_else(|| "imported".into(), |s| s.to_string_lossy().into_owned())
    });
    let manifest = Manifest::new(
        format!("import-{hostname}"),
        RecorderInfo {
            name: "perfpack import".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            command_line: std::env::args().collect(),
        },
        Host {
            hostname,
            ..Host::default()
        },
        ClockSnapshot::default(),
    );
    // Written beside `out` and moved into place at the end: on any failure `out` is as it was.
    let staged = crate::bundle::staged::Staged::new(out, force, "import")?;
    let mut writer = BundleWriter::create(staged.path(), manifest, WriterOptions::default())?;
    let mut report = Report::default();
    if let Err(err) = body(&mut writer, &mut report) {
        // Dropping `staged` removes what was written.
        drop(writer);
        return Err(err);
    }

    let (start, end) = report.ts_range.unwrap_or((0, 0));
    let m = writer.manifest_mut();
    m.clocks.start.monotonic_ns = start;
    let seen_cpus = report
        .max_cpu
        .and_then(|c| u32::try_from(c).ok())
        .map_or(0, |c| c + 1);
    m.host.n_cpus = n_cpus.unwrap_or(0).max(seen_cpus);
    let mut detail = format!("imported from {} {}", tool, file.display());
    for note in report.note_lines() {
        detail.push_str("; ");
        detail.push_str(&note);
    }
    let unit = if report.input_unit.is_empty() {
        "lines"
    } else {
        report.input_unit
    };
    let mut losses: Vec<Loss> = report
        .lost
        .iter()
        .map(|&(kind, count)| Loss {
            kind: kind.into(),
            cpu: None,
            count,
            event: None,
        })
        .collect();
    let mut reasons: Vec<String> = report
        .lost
        .iter()
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect();
    if report.unparsed > 0 {
        losses.push(Loss {
            kind: format!("unparsed_{unit}"),
            cpu: None,
            count: report.unparsed,
            event: None,
        });
        reasons.push(format!("{} {unit} could not be parsed", report.unparsed));
    }
    m.sources.push(Source {
        name: source_name.into(),
        status: if losses.is_empty() {
            SourceStatus::Ok
        } else {
            SourceStatus::Partial
        },
        reason: reasons.join("; "),
        detail,
        records: report.records,
        losses,
        unwind: std::mem::take(&mut report.unwind),
    });
    let end = ClockSnapshot {
        monotonic_ns: end,
        ..ClockSnapshot::default()
    };
    writer
        .finish(State::Complete, end)
        .with_context(|| format!("{}: finishing the bundle", out.display()))?;
    staged.commit()?;
    Ok(report)
}

/// The most CPUs a Linux kernel supports (NR_CPUS at most 8192).
const MAX_CPUS: i32 = 8192;

/// A CPU number as both formats print it (`[003]`), refused when no kernel has that CPU: the
/// number sizes per-CPU tables and the bundle's CPU count.
fn parse_cpu(s: &str) -> Option<i32> {
    s.parse().ok().filter(|c| (0..MAX_CPUS).contains(c))
}

/// Parses `12345.678901` (seconds with a fraction of up to 9 digits) into nanoseconds.
fn parse_seconds_ns(s: &str) -> Option<i64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut frac_ns: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..9 {
        frac_ns *= 10;
    }
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

#[cfg(test)]
mod tests {
    use super::parse_seconds_ns;

    #[test]
    fn seconds_parse_to_ns() {
        assert_eq!(parse_seconds_ns("12.5"), Some(12_500_000_000));
        assert_eq!(parse_seconds_ns("1234.000001"), Some(1_234_000_001_000));
        assert_eq!(parse_seconds_ns("7.123456789"), Some(7_123_456_789));
        assert_eq!(parse_seconds_ns("7"), Some(7_000_000_000));
        assert_eq!(parse_seconds_ns("x.1"), None);
        assert_eq!(parse_seconds_ns("1.1234567891"), None);
    }
}
