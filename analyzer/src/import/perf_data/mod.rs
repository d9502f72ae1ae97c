//! Importer of `perf record` files (`perf.data`, file or pipe mode) through the linux-perf-data
//! crate: every sample of every event becomes a `stack_sample` row, its callchain named as
//! `perf script` names it on the machine that runs the import.
//!
//! - User frames are looked up in the ELF symbol tables of the mapped files (the recorder's
//!   symbolizer), when the file is here and its build id is the one the capture recorded; a
//!   file that is missing or differs leaves its frames `[unknown]` in their module, and says so.
//! - Kernel frames are named from this machine's `/proc/kallsyms` when its kernel is the one
//!   recorded (same build id, or the same release where the capture has no build id), moved by
//!   the difference of the `_text` addresses (KASLR differs between boots).
//! - A sample with user registers and a stack copy (`perf record --call-graph dwarf`) has its
//!   user stack unwound here from the mapped files' CFI, as `perf script` does (unwind.rs).
//! - A sample without a callchain is its sampled address alone (as `perf script` prints it).
//! - Lost-sample records are counted into the manifest's losses.

mod header;
mod symbols;
mod unwind;

use std::io::{Read, Seek};

use linux_perf_data::linux_perf_event_reader::{
    CpuMode, EventRecord, Mmap2FileId, RawData, SampleRecord,
};
use linux_perf_data::{PerfFileReader, PerfFileRecord};
use perfpack_schema::BundleWriter;
use perfpack_schema::fxhash::FxHashMap;

pub use header::{check_header, guarded};
use symbols::{KERNEL_START, Symbolizer, hex};
use unwind::StackUnwinder;

use crate::import::Report;
use crate::import::stacks::{SampleRef, StackSink};

/// Callchain entries at or above this value are context markers (`PERF_CONTEXT_*`), not
/// addresses.
const PERF_CONTEXT_MAX: u64 = -4095i64 as u64;
const PERF_CONTEXT_KERNEL: u64 = -128i64 as u64;
const PERF_CONTEXT_USER: u64 = -512i64 as u64;

#[derive(Debug)]
pub struct Header {
    pub hostname: Option<String>,
    pub nr_cpus: Option<u32>,
}

fn text(raw: &RawData<'_>) -> String {
    String::from_utf8_lossy(&raw.as_slice()).into_owned()
}

/// Reads the header of a perf.data file and what it says about the host.
pub fn open<R: Read + Seek>(reader: R) -> anyhow::Result<(PerfFileReader<R>, Header)> {
    let r = PerfFileReader::parse_file(reader)
        .map_err(|e| anyhow::anyhow!("not a perf.data file perfpack reads: {e}"))?;
    let header = Header {
        hostname: r.perf_file.hostname().ok().flatten().map(str::to_string),
        nr_cpus: r
            .perf_file
            .nr_cpus()
            .ok()
            .flatten()
            .map(|n| n.nr_cpus_online),
    };
    Ok((r, header))
}

/// Imports every record of an opened capture.
pub fn import<R: Read>(
    reader: PerfFileReader<R>,
    writer: &mut BundleWriter,
    report: &mut Report,
) -> anyhow::Result<()> {
    report.record_kind = "samples";
    report.input_unit = "records";
    let PerfFileReader {
        mut perf_file,
        mut record_iter,
    } = reader;
    let mut sym = Symbolizer::new(perf_file.os_release().ok().flatten().map(str::to_string));
    if let Ok(ids) = perf_file.build_ids() {
        for (key, info) in ids {
            let id = hex(&info.build_id);
            if key.name() == "[kernel.kallsyms]" {
                sym.kernel_build_id = Some(id);
            } else if info.path.first() == Some(&b'/') {
                let path = String::from_utf8_lossy(&info.path).into_owned();
                sym.file_id(&path, Some(id));
            }
        }
    }
    let events: Vec<String> = perf_file
        .event_attributes()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.name()
                .map_or_else(|| format!("event{i}"), |n| event_name(n).to_string())
        })
        .collect();
    let mut sink = StackSink::default();
    let mut unwinder = StackUnwinder::new();
    let mut comms: FxHashMap<i32, String> = FxHashMap::default();
    let mut frames: Vec<i64> = Vec::with_capacity(128);
    let mut lost = 0u64;
    let mut without_callchain = 0u64;
    while let Some(record) = record_iter
        .next_record(&mut perf_file)
        .map_err(|e| anyhow::anyhow!("record {}: {e}", report.lines + 1))?
    {
        report.lines += 1;
        let PerfFileRecord::EventRecord { attr_index, record } = record else {
            continue;
        };
        let parsed = match record.parse() {
            Ok(p) => p,
            Err(e) => {
                report.unparsed(report.lines, &format!("{:?}: {e}", record.record_type));
                continue;
            }
        };
        match parsed {
            EventRecord::Comm(c) => {
                if c.is_execve {
                    sym.exec(c.pid);
                    unwinder.invalidate(c.pid);
                }
                comms.insert(c.tid, text(&c.name));
            }
            EventRecord::Fork(f) => {
                if f.pid != f.ppid {
                    sym.fork(f.ppid, f.pid);
                    unwinder.invalidate(f.pid);
                }
                if let Some(parent) = comms.get(&f.ptid).cloned() {
                    comms.entry(f.tid).or_insert(parent);
                }
            }
            EventRecord::Mmap(m) if m.is_executable => {
                sym.add_mapping(m.pid, m.address, m.length, m.page_offset, &text(&m.path));
                unwinder.invalidate(m.pid);
            }
            EventRecord::Mmap2(m) => {
                const PROT_EXEC: u32 = 4;
                if m.protection & PROT_EXEC != 0 || m.cpu_mode == CpuMode::Kernel {
                    let path = text(&m.path);
                    if let Mmap2FileId::BuildId(id) = &m.file_id {
                        sym.file_id(&path, Some(hex(id)));
                    }
                    sym.add_mapping(m.pid, m.address, m.length, m.page_offset, &path);
                    unwinder.invalidate(m.pid);
                }
            }
            EventRecord::Lost(l) => lost += l.count,
            EventRecord::Sample(s) => {
                frames.clear();
                let pid = s.pid.unwrap_or(-1);
                let tid = s.tid.unwrap_or(pid);
                let comm = comms
                    .get(&tid)
                    .or_else(|| comms.get(&pid))
                    .map_or(":unknown", String::as_str);
                let comm = if comm == ":unknown" && pid == 0 {
                    "swapper"
                } else {
                    comm
                };
                let unwinds = s.user_regs.is_some() && s.user_stack.is_some();
                if !callchain_frames(&s, pid, !unwinds, &mut sym, &mut sink, &mut frames)
                    && !unwinds
                {
                    without_callchain += 1;
                }
                let unwound = if unwinds {
                    unwinder.unwind(&s, pid, comm, &mut sym, &mut sink, &mut frames)
                } else {
                    None
                };
                let ts_ns = s
                    .timestamp
                    .map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX));
                let cpu = s.cpu.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1);
                let event = events
                    .get(attr_index)
                    .map_or("unknown-event", String::as_str);
                sink.add(
                    &SampleRef {
                        ts_ns,
                        cpu,
                        pid,
                        tid,
                        comm,
                        event,
                        weight: s
                            .period
                            .map_or(1, |p| i64::try_from(p.max(1)).unwrap_or(i64::MAX)),
                        unwind: unwound.map(|u| u.method),
                        truncated: unwound.map(|u| u.truncated),
                    },
                    &frames,
                    writer,
                )?;
                report.records += 1;
                report.saw(Some(ts_ns), (cpu >= 0).then_some(cpu));
            }
            _ => {}
        }
    }
    sink.flush(writer)?;
    if without_callchain > 0 {
        report.note(&format!(
            "{without_callchain} samples have no callchain (recorded without -g): each is its sampled address alone"
        ));
    }
    if lost > 0 {
        report.lost.push(("perf-lost-samples", lost));
        report.note(&format!(
            "the capture says {lost} samples were lost while recording"
        ));
    }
    let (rows, total) = unwinder.stats(perfpack_schema::manifest::Source::MAX_UNWIND_ROWS);
    if total.samples > 0 {
        report.note(&format!(
            "{} user stacks unwound from their stack copies (--call-graph dwarf): {} with CFI throughout, {} partly by frame pointers, {} by frame pointers only; {} stopped before the outermost frame",
            total.samples, total.dwarf, total.mixed, total.fp, total.truncated
        ));
    }
    report.unwind = rows;
    for why in &sym.refused {
        report.note(&format!("frames left [unknown]: {why}"));
    }
    Ok(())
}

/// Frame ids of a sample, leaf first; its user entries only when `user` (they are unwound
/// from the stack copy otherwise). False when the sample has no callchain (its address is its
/// one frame, as perf script prints it).
fn callchain_frames(
    s: &SampleRecord<'_>,
    pid: i32,
    user: bool,
    sym: &mut Symbolizer,
    sink: &mut StackSink,
    out: &mut Vec<i64>,
) -> bool {
    let kernel_mode = matches!(s.cpu_mode, CpuMode::Kernel | CpuMode::GuestKernel);
    let Some(chain) = &s.callchain else {
        if let Some(ip) = s.ip.filter(|&ip| user || kernel_mode || ip >= KERNEL_START) {
            out.push(if kernel_mode || ip >= KERNEL_START {
                sym.kernel_frame(ip, sink)
            } else {
                sym.user_frame(pid, ip, sink)
            });
        }
        return false;
    };
    let mut in_kernel = kernel_mode;
    for i in 0..chain.len() {
        let Some(addr) = chain.get(i) else { break };
        if addr >= PERF_CONTEXT_MAX {
            match addr {
                PERF_CONTEXT_KERNEL => in_kernel = true,
                PERF_CONTEXT_USER => in_kernel = false,
                _ => {}
            }
            continue;
        }
        if in_kernel || addr >= KERNEL_START {
            out.push(sym.kernel_frame(addr, sink));
        } else if user {
            out.push(sym.user_frame(pid, addr, sink));
        }
    }
    true
}

/// The event name as perf script prints it: modifiers dropped (`cycles:ppp` → `cycles`),
/// tracepoints kept whole (`sched:sched_switch`).
fn event_name(name: &str) -> &str {
    super::perf_script::event_name(name)
}
