//! Importer of `perf script` text for a `perf record -g` capture: an event line
//! (`comm pid/tid [cpu] secs.frac: period event:`), then one indented line per frame, leaf
//! first (`addr symbol+off (module)`), then a blank line. Comms and symbols may hold spaces and
//! parentheses; modules may end in ` (deleted)`. Tracepoint samples (`perf record -e
//! sched:sched_switch -g`) print their fields after the event name; those go to `ftrace_event`
//! and the typed tables as the ftrace importer writes them, so `sched_switch` samples give an
//! off-CPU flame graph its exact stacks at switch-out.

use perfpack_schema::BundleWriter;

use super::ftrace_text::{Prefix, Tables};
use super::stacks::{FrameRef, SampleRef, StackSink};
use super::{Lines, Report, parse_cpu, parse_seconds_ns};

/// The header of one sample.
#[derive(Debug, PartialEq)]
struct EventLine<'a> {
    comm: &'a str,
    pid: Option<i32>,
    tid: i32,
    cpu: Option<i32>,
    ts_ns: Option<i64>,
    period: Option<i64>,
    event: &'a str,
    /// What follows the event name: a frame printed on the event line itself (perf does this
    /// for one-frame stacks), or a tracepoint's fields.
    tail: Option<&'a str>,
}

impl EventLine<'_> {
    /// `system:name` of a tracepoint event.
    fn tracepoint(&self) -> Option<(&str, &str)> {
        self.event.split_once(':')
    }
}

/// A frame line split into its parts.
#[derive(Debug, PartialEq)]
struct FrameLine<'a> {
    pc: u64,
    symbol: &'a str,
    module: &'a str,
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A pid or tid as perf script prints it: digits, or `-1` for a task that had exited before perf
/// read its name (`:-1    -1 [001] 910.854533: ...`).
fn is_id(s: &str) -> bool {
    is_digits(s) || s == "-1"
}

/// Splits `s` into whitespace-separated words with their byte offsets.
fn words(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.split(' ')
        .scan(0usize, |pos, w| {
            let start = *pos;
            *pos += w.len() + 1;
            Some((start, w))
        })
        .filter(|(_, w)| !w.is_empty())
}

/// The event of samples printed without an event column.
const NO_EVENT: &str = "unknown-event";

/// Drops perf's event modifiers (`cycles:ppp` → `cycles`, `cpu-clock:u` → `cpu-clock`) but keeps
/// tracepoint names (`sched:sched_switch`).
pub(super) fn event_name(token: &str) -> &str {
    let token = token.trim_end_matches(':');
    match token.rsplit_once(':') {
        Some((name, mods))
            if !mods.is_empty() && mods.bytes().all(|b| b"ukhpPGHISDWe".contains(&b)) =>
        {
            name
        }
        _ => token,
    }
}

fn parse_event_line(line: &str) -> Option<EventLine<'_>> {
    // The comm ends before the first word (not the first) that is `tid` or `pid/tid`.
    let mut it = words(line).skip(1);
    let (id_at, id) = it.find(|(_, w)| {
        let (a, b) = w.split_once('/').unwrap_or(("0", w));
        is_id(a) && is_id(b)
    })?;
    let comm = line[..id_at].trim();
    let (pid, tid) = match id.split_once('/') {
        Some((p, t)) => (Some(p.parse().ok()?), t.parse().ok()?),
        None => (None, id.parse().ok()?),
    };
    let mut rest = &line[id_at + id.len()..];
    let mut cpu = None;
    let mut ts_ns = None;
    let mut period = None;
    let mut event = None;
    let mut tail = None;
    loop {
        let trimmed = rest.trim_start();
        let Some((_, w)) = words(trimmed).next() else {
            break;
        };
        let after = &trimmed[w.len()..];
        if cpu.is_none() && ts_ns.is_none() && w.starts_with('[') && w.ends_with(']') {
            cpu = Some(parse_cpu(&w[1..w.len() - 1])?);
        } else if ts_ns.is_none() && event.is_none() && w.ends_with(':') && w.contains('.') {
            ts_ns = Some(parse_seconds_ns(&w[..w.len() - 1])?);
        } else if event.is_none() && period.is_none() && is_digits(w) {
            period = Some(w.parse().ok()?);
        } else if event.is_none() && w.ends_with(':') {
            event = Some(event_name(w));
            let t = after.trim();
            if !t.is_empty() {
                tail = Some(t);
            }
            break;
        } else if event.is_none()
            && ts_ns.is_some()
            && w.bytes().all(|b| b.is_ascii_hexdigit())
            && after.trim_end().ends_with(')')
        {
            // `perf script -F comm,pid,tid,time,ip,sym,dso`: no event column, and the one
            // frame on the header line (no callchain below).
            event = Some(NO_EVENT);
            tail = Some(trimmed.trim());
            break;
        } else {
            return None;
        }
        rest = after;
    }
    Some(EventLine {
        comm,
        pid,
        tid,
        cpu,
        ts_ns,
        period,
        event: event?,
        tail,
    })
}

/// Splits `addr symbol+0xoff (module)`; the module is the last balanced parenthesis group, so
/// `(/tmp/x (deleted))` and symbols with argument lists both work.
fn parse_frame_line(line: &str) -> Option<FrameLine<'_>> {
    let line = line.trim();
    let (pc, rest) = line.split_once(' ')?;
    let pc = u64::from_str_radix(pc, 16).ok()?;
    let rest = rest.trim_start();
    if !rest.ends_with(')') {
        return None;
    }
    let mut depth = 0i32;
    let mut open = None;
    // Parentheses are ASCII, so scanning bytes finds them without decoding UTF-8.
    for (i, c) in rest.bytes().enumerate().rev() {
        match c {
            b')' => depth += 1,
            b'(' => {
                depth -= 1;
                if depth == 0 {
                    open = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let open = open?;
    let module = &rest[open + 1..rest.len() - 1];
    let mut symbol = rest[..open].trim_end();
    if let Some(at) = symbol.rfind("+0x")
        && symbol[at + 3..].bytes().all(|b| b.is_ascii_hexdigit())
        && at + 3 < symbol.len()
    {
        symbol = &symbol[..at];
    }
    Some(FrameLine { pc, symbol, module })
}

/// A Rust symbol in the legacy mangling that perf only half demangled
/// (`_$LT$alloc..vec..Vec$LT$T$GT$$GT$::push::h5f6e4a3b2c1d0e9f`, or `emulator::main::hc2aaa9b4591a10c7`
/// where nothing but the hash is left), finished the way inferno-collapse-perf finishes it: the
/// `::h<16 hex>` hash dropped, the `$..$` escapes and `..` path separators decoded, the symbol's
/// own leading `_` before an escape removed (`<alloc::vec::Vec<T>>::push`). Anything without
/// the hash is returned as it is.
fn finish_rust_symbol(name: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, hash)) = name.rsplit_once("::") else {
        return name.into();
    };
    let is_hash = hash.len() == 17
        && hash.starts_with('h')
        && hash[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hash {
        return name.into();
    }
    if !(path.contains('$') || path.contains("..")) {
        return path.into();
    }
    let path = path
        .strip_prefix('_')
        .filter(|p| p.starts_with('$'))
        .unwrap_or(path);
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix("..") {
            out.push_str("::");
            rest = tail;
            continue;
        }
        if rest.starts_with('$')
            && let Some(end) = rest[1..].find('$')
        {
            let code = &rest[1..1 + end];
            let decoded = match code {
                "SP" => Some('@'),
                "BP" => Some('*'),
                "RF" => Some('&'),
                "LT" => Some('<'),
                "GT" => Some('>'),
                "LP" => Some('('),
                "RP" => Some(')'),
                "C" => Some(','),
                _ => code
                    .strip_prefix('u')
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(char::from_u32),
            };
            if let Some(c) = decoded {
                out.push(c);
                rest = &rest[end + 2..];
                continue;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

fn is_kernel(module: &str, pc: u64) -> bool {
    pc >= 0xffff_8000_0000_0000
        || module.starts_with("[kernel")
        || module.contains("vmlinux")
        || (module.starts_with('[') && module != "[unknown]" && !module.starts_with("[vdso]"))
}

/// One sample being collected.
#[derive(Debug, Default)]
struct Pending {
    comm: String,
    event: String,
    pid: i32,
    tid: i32,
    cpu: i32,
    ts_ns: Option<i64>,
    weight: i64,
    /// Where its header line is.
    line_no: u64,
    /// Frame ids, leaf first.
    frames: Vec<i64>,
    open: bool,
}

impl Pending {
    fn push_frame(&mut self, f: &FrameLine<'_>, sink: &mut StackSink) {
        // perf-map-agent's unfolded maps join a JIT frame and the methods inlined into it
        // with `->` (`A->B->C`: B inlined into A, C into B): frames of their own, leaf first,
        // the inlined ones marked `_[i]` as inferno marks them. Only in a JIT map: C++'s
        // `operator->` is a name.
        if f.module.starts_with("/tmp/perf-") && f.symbol.contains("->") {
            let parts: Vec<&str> = f.symbol.split("->").collect();
            for (i, part) in parts.iter().enumerate().rev() {
                let name = if i == 0 {
                    part.to_string()
                } else {
                    format!("{part}_[i]")
                };
                self.push_named(&name, f, sink);
            }
            return;
        }
        let symbol = finish_rust_symbol(f.symbol);
        self.push_named(&symbol, f, sink);
    }

    fn push_named(&mut self, symbol: &str, f: &FrameLine<'_>, sink: &mut StackSink) {
        let id = sink.frame_id(FrameRef {
            // Old perf printed an unnamed symbol as nothing (`7f1e2215d058  (/lib/libc.so)`),
            // newer perf as `[unknown]`: the same fact, named after its module when folded.
            name: if symbol.is_empty() {
                "[unknown]"
            } else {
                symbol
            },
            module: (f.module != "[unknown]").then_some(f.module),
            kernel: is_kernel(f.module, f.pc),
        });
        self.frames.push(id);
    }
}

fn finish(
    p: &mut Pending,
    sink: &mut StackSink,
    writer: &mut BundleWriter,
    report: &mut Report,
) -> anyhow::Result<()> {
    if !p.open {
        return Ok(());
    }
    p.open = false;
    if p.frames.is_empty() {
        report.odd(
            p.line_no,
            "without a callchain: each counts under its process name alone",
        );
    }
    sink.add(
        &SampleRef {
            ts_ns: p.ts_ns.unwrap_or(0),
            cpu: p.cpu,
            pid: p.pid,
            tid: p.tid,
            comm: &p.comm,
            event: &p.event,
            weight: p.weight,
            unwind: None,
            truncated: None,
        },
        &p.frames,
        writer,
    )?;
    report.records += 1;
    report.saw(p.ts_ns, (p.cpu >= 0).then_some(p.cpu));
    p.frames.clear();
    Ok(())
}

/// Counts what the header of the sample at `line_no` lacks: per sample, so that a few odd lines
/// in a large capture are reported as those lines, never as a property of the file.
fn note_header(ev: &EventLine<'_>, line_no: u64, report: &mut Report) {
    if ev.tid == -1 {
        report.odd(
            line_no,
            "of tasks that had exited before perf read them (pid -1, comm :-1)",
        );
    } else if ev.pid.is_none() {
        report.odd(
            line_no,
            "without a pid column (perf script -F tid): pid is the thread id",
        );
    }
    if ev.cpu.is_none() {
        report.odd(line_no, "without a cpu column: cpu is -1");
    }
    if ev.ts_ns.is_none() {
        report.odd(line_no, "without a time: ts_ns is 0");
    }
    if ev.period.is_none() {
        report.odd(line_no, "without a period: each weighs 1");
    }
    if ev.event == NO_EVENT {
        report.odd(
            line_no,
            "without an event name: the event is called unknown-event",
        );
    }
}

pub fn import<R: std::io::BufRead>(
    lines: &mut Lines<R>,
    writer: &mut BundleWriter,
    report: &mut Report,
) -> anyhow::Result<()> {
    report.record_kind = "samples";
    let mut sink = StackSink::default();
    let mut tracepoints = Tables::default();
    let mut p = Pending::default();
    loop {
        let line_no = lines.line_no + 1;
        let Some(line) = lines.next_line()? else {
            break;
        };
        if line.trim().is_empty() {
            finish(&mut p, &mut sink, writer, report)?;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        // Indented: a frame of the open sample, or (perf script -F with its columns padded)
        // a header line whose comm is right-aligned.
        let indented = line.starts_with([' ', '\t']);
        let frame = indented.then(|| parse_frame_line(&line)).flatten();
        if p.open
            && let Some(f) = frame
        {
            p.push_frame(&f, &mut sink);
            continue;
        }
        let line = line.trim_start();
        let Some(ev) = (frame.is_none()).then(|| parse_event_line(line)).flatten() else {
            // Old perf (3.x) printed frames without indentation (`java 19983 cycles:`, then
            // `ffffffff8103d0ca native_write_msr_safe ([kernel.kallsyms])`): a line that is no
            // header is a frame of the open sample when it is one.
            if !indented
                && p.open
                && let Some(f) = parse_frame_line(line)
            {
                p.push_frame(&f, &mut sink);
            } else {
                report.unparsed(line_no, line);
            }
            continue;
        };
        // A new event line also ends a sample that had no blank line after it.
        finish(&mut p, &mut sink, writer, report)?;
        note_header(&ev, line_no, report);
        p.comm.clear();
        p.comm.push_str(ev.comm);
        p.event.clear();
        p.event.push_str(ev.event);
        p.tid = ev.tid;
        p.pid = ev.pid.unwrap_or(ev.tid);
        p.cpu = ev.cpu.unwrap_or(-1);
        p.ts_ns = ev.ts_ns;
        p.weight = ev.period.unwrap_or(1);
        p.line_no = line_no;
        p.open = true;
        match (ev.tail, ev.tracepoint()) {
            (Some(fields), Some((system, name))) => {
                let understood = tracepoints.add(&Prefix {
                    comm: Some(ev.comm),
                    tid: ev.tid,
                    tgid: ev.pid.filter(|&pid| pid >= 0),
                    cpu: p.cpu,
                    ts_ns: p.ts_ns.unwrap_or(0),
                    system: Some(system),
                    name,
                    body: fields,
                });
                if !understood {
                    report.unparsed(line_no, line);
                }
                if tracepoints.len() >= super::SEGMENT_ROWS {
                    tracepoints.flush(writer)?;
                }
            }
            (Some(inline), None) => match parse_frame_line(inline) {
                Some(f) => p.push_frame(&f, &mut sink),
                None => report.unparsed(line_no, line),
            },
            (None, _) => {}
        }
    }
    finish(&mut p, &mut sink, writer, report)?;
    sink.flush(writer)?;
    tracepoints.flush(writer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_of_every_shape() {
        let e = parse_event_line("perf 12345/12346 [003] 1234.567890:     250000 cpu-clock:ppp: ")
            .unwrap();
        assert_eq!(
            e,
            EventLine {
                comm: "perf",
                pid: Some(12345),
                tid: 12346,
                cpu: Some(3),
                ts_ns: Some(1_234_567_890_000),
                period: Some(250000),
                event: "cpu-clock",
                tail: None
            }
        );
        let e =
            parse_event_line("V8 WorkerThread 24636/25607 [000] 94564.109216: cycles:").unwrap();
        assert_eq!(
            (e.comm, e.pid, e.tid, e.period, e.event),
            ("V8 WorkerThread", Some(24636), 25607, None, "cycles")
        );
        let e = parse_event_line("java 12688 6544038.708352: cpu-clock:").unwrap();
        assert_eq!((e.comm, e.pid, e.tid, e.cpu), ("java", None, 12688, None));
        let e = parse_event_line(
            "false 64414 20110.539270:      34467 cycles:u:  ffffffff9aa3c8de [unknown] ([unknown])",
        )
        .unwrap();
        assert_eq!(e.tail, Some("ffffffff9aa3c8de [unknown] ([unknown])"));
        assert_eq!(e.event, "cycles");
        let e = parse_event_line("kworker/0:1 77 [000] 1.000001: 1 sched:sched_switch:").unwrap();
        assert_eq!((e.comm, e.event), ("kworker/0:1", "sched:sched_switch"));
        // A comm that is all digits is still the comm when a pid follows.
        let e = parse_event_line("1234 55/56 [001] 2.5: 10 cpu-clock:").unwrap();
        assert_eq!((e.comm, e.pid, e.tid), ("1234", Some(55), 56));
        assert!(parse_event_line("garbage line").is_none());
        // A task that had exited before perf read it: comm `:-1`, tid -1, and the rest as usual.
        let e =
            parse_event_line(":-1    -1 [001]   910.854533:    1001001 cpu-clock:ppp: ").unwrap();
        assert_eq!(
            (e.comm, e.pid, e.tid, e.cpu, e.ts_ns, e.period, e.event),
            (
                ":-1",
                None,
                -1,
                Some(1),
                Some(910_854_533_000),
                Some(1_001_001),
                "cpu-clock"
            )
        );
        let e = parse_event_line(":-1 -1/-1 [000] 1.5: 1 cpu-clock:").unwrap();
        assert_eq!((e.pid, e.tid), (Some(-1), -1));
        // perf 3.x: no cpu, time or period (`java 19983 cycles:`).
        let e = parse_event_line("java 19983 cycles:").unwrap();
        assert_eq!(
            (e.comm, e.tid, e.cpu, e.ts_ns, e.period, e.event),
            ("java", 19983, None, None, None, "cycles")
        );
        // An unindented frame line is no header.
        assert!(
            parse_event_line("ffffffff8103d0ca native_write_msr_safe ([kernel.kallsyms])")
                .is_none()
        );
        assert!(
            parse_event_line(
                "7f7241fbe6d8 arrayOopDesc::base(BasicType) const (/opt/jdk/lib/server/libjvm.so)"
            )
            .is_none()
        );
    }

    #[test]
    fn half_demangled_rust_symbols_are_finished_as_inferno_finishes_them() {
        // inferno-collapse-perf 0.12 folds these two as `<alloc::vec::Vec<T>>::push` and
        // `prog::main::_{{closure}}` (tests/data/import/perf-script-rust.txt).
        assert_eq!(
            finish_rust_symbol("_$LT$alloc..vec..Vec$LT$T$GT$$GT$::push::h5f6e4a3b2c1d0e9f"),
            "<alloc::vec::Vec<T>>::push"
        );
        assert_eq!(
            finish_rust_symbol("prog::main::_$u7b$$u7b$closure$u7d$$u7d$::h0123456789abcdef"),
            "prog::main::_{{closure}}"
        );
        assert_eq!(
            finish_rust_symbol("_$LT$T$u20$as$u20$core..fmt..Display$GT$::fmt::h0000000000000abc"),
            "<T as core::fmt::Display>::fmt"
        );
        // No hash: left alone (C++ and already demangled names).
        assert_eq!(
            finish_rust_symbol("std::vector<int>::push_back"),
            "std::vector<int>::push_back"
        );
        assert_eq!(finish_rust_symbol("a$LT$b::hzzzz"), "a$LT$b::hzzzz");
        // Demangled but for the hash (inferno 0.12 folds it as `emulator::main`).
        assert_eq!(
            finish_rust_symbol("emulator::main::hc2aaa9b4591a10c7"),
            "emulator::main"
        );
        assert_eq!(
            finish_rust_symbol("std::rt::lang_start::{{closure}}::h0123456789abcdef"),
            "std::rt::lang_start::{{closure}}"
        );
        // Not a hash: 15 hex digits, or a name that only looks like one.
        assert_eq!(
            finish_rust_symbol("a::h0123456789abcde"),
            "a::h0123456789abcde"
        );
        assert_eq!(finish_rust_symbol("a::hello"), "a::hello");
    }

    #[test]
    fn frame_lines_with_odd_names() {
        let f = parse_frame_line("\tffffffff8a2b1234 native_write_msr+0x4 ([kernel.kallsyms])")
            .unwrap();
        assert_eq!(
            (f.pc, f.symbol, f.module),
            (0xffffffff8a2b1234, "native_write_msr", "[kernel.kallsyms]")
        );
        let f = parse_frame_line(
            "\t    7f00aa operator new(unsigned long)+0x1c (/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30)",
        )
        .unwrap();
        assert_eq!(f.symbol, "operator new(unsigned long)");
        let f = parse_frame_line("\t 55d0 main+0x10 (/tmp/a.out (deleted))").unwrap();
        assert_eq!((f.symbol, f.module), ("main", "/tmp/a.out (deleted)"));
        let f = parse_frame_line("\t 0 [unknown] ([unknown])").unwrap();
        assert_eq!((f.symbol, f.module), ("[unknown]", "[unknown]"));
        let f = parse_frame_line("\t 7f1e2215d058  (/lib/x86_64-linux-gnu/libc-2.15.so)").unwrap();
        assert_eq!(f.symbol, "");
        assert!(parse_frame_line("\t zzz foo (bar)").is_none());
        assert!(parse_frame_line("\t 1234 foo").is_none());
    }
}
