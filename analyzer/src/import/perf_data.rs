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
//! - A sample without a callchain is its sampled address alone (as `perf script` prints it).
//! - Lost-sample records are counted into the manifest's losses.

use std::io::{Read, Seek};

use linux_perf_data::linux_perf_event_reader::{
    CpuMode, EventRecord, Mmap2FileId, RawData, SampleRecord,
};
use linux_perf_data::{PerfFileReader, PerfFileRecord};
use perfpack_recorder::symbolize::{ElfInfo, Kallsyms};
use perfpack_schema::BundleWriter;
use perfpack_schema::fxhash::FxHashMap;

use super::Report;
use super::stacks::{FrameRef, SampleRef, StackSink};

/// Callchain entries at or above this value are context markers (`PERF_CONTEXT_*`), not
/// addresses.
const PERF_CONTEXT_MAX: u64 = -4095i64 as u64;
const PERF_CONTEXT_KERNEL: u64 = -128i64 as u64;
const PERF_CONTEXT_USER: u64 = -512i64 as u64;

/// The lowest kernel address on x86_64 (the canonical upper half).
const KERNEL_START: u64 = 0xffff_8000_0000_0000;

/// What the import needs of the capture's header before the records.
#[derive(Debug)]
pub struct Header {
    pub hostname: Option<String>,
    pub nr_cpus: Option<u32>,
}

/// One executable mapping of a process.
#[derive(Debug, Clone)]
struct Mapping {
    start: u64,
    end: u64,
    pgoff: u64,
    /// Index into `Symbolizer::files`.
    file: usize,
}

/// A mapped file and what is known of it here.
#[derive(Debug)]
struct MappedFile {
    path: String,
    /// Build id the capture recorded for it, hex.
    recorded_build_id: Option<String>,
    /// Loaded on first use; `None` inside when it cannot be used here.
    elf: Option<Option<ElfInfo>>,
}

#[derive(Debug, Default)]
struct Symbolizer {
    files: Vec<MappedFile>,
    file_ids: FxHashMap<String, usize>,
    /// Executable mappings by pid, sorted by start when looked up.
    maps: FxHashMap<i32, Vec<Mapping>>,
    sorted: FxHashMap<i32, bool>,
    /// Frame ids by (file, file offset), and of kernel addresses.
    user_frames: FxHashMap<(usize, u64), i64>,
    kernel_frames: FxHashMap<u64, i64>,
    /// Frame ids of addresses no mapping covers, by pid (one `[unknown]` frame).
    unknown_frame: Option<i64>,
    kallsyms: Option<Kallsyms>,
    /// Added to a recorded kernel address to find it in this machine's kallsyms.
    kaslr_delta: u64,
    /// Recorded address of `_text`, from the kernel's mmap record.
    recorded_text: Option<u64>,
    kernel_usable: Option<bool>,
    kernel_build_id: Option<String>,
    os_release: Option<String>,
    /// Files whose frames stay unnamed, with why.
    refused: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a local build id (full length) is the one recorded (perf pads to 20 bytes).
fn same_build_id(local: &str, recorded: &str) -> bool {
    recorded.starts_with(local) && recorded[local.len()..].bytes().all(|b| b == b'0')
}

impl Symbolizer {
    fn file_id(&mut self, path: &str, recorded_build_id: Option<String>) -> usize {
        if let Some(&id) = self.file_ids.get(path) {
            if recorded_build_id.is_some() && self.files[id].recorded_build_id.is_none() {
                self.files[id].recorded_build_id = recorded_build_id;
            }
            return id;
        }
        let id = self.files.len();
        self.files.push(MappedFile {
            path: path.to_string(),
            recorded_build_id,
            elf: None,
        });
        self.file_ids.insert(path.to_string(), id);
        id
    }

    fn add_mapping(&mut self, pid: i32, start: u64, len: u64, pgoff: u64, path: &str) {
        if pid == -1 || start >= KERNEL_START {
            // The kernel's own mapping: its pgoff is where `_text` was.
            if path.starts_with("[kernel.kallsyms]") && self.recorded_text.is_none() {
                self.recorded_text = Some(pgoff);
            }
            return;
        }
        let file = self.file_id(path, None);
        let maps = self.maps.entry(pid).or_default();
        let end = start.saturating_add(len);
        // A new mapping replaces what it overlaps (as mmap does).
        maps.retain(|m| m.end <= start || m.start >= end);
        maps.push(Mapping {
            start,
            end,
            pgoff,
            file,
        });
        self.sorted.insert(pid, false);
    }

    /// A child starts with its parent's mappings.
    fn fork(&mut self, parent: i32, child: i32) {
        if parent == child {
            return;
        }
        if let Some(maps) = self.maps.get(&parent).cloned() {
            self.maps.insert(child, maps);
            self.sorted.insert(child, false);
        }
    }

    fn exec(&mut self, pid: i32) {
        self.maps.remove(&pid);
    }

    fn mapping(&mut self, pid: i32, addr: u64) -> Option<Mapping> {
        let maps = self.maps.get_mut(&pid)?;
        if self.sorted.get(&pid) != Some(&true) {
            maps.sort_by_key(|m| m.start);
            self.sorted.insert(pid, true);
        }
        let i = maps.partition_point(|m| m.start <= addr).checked_sub(1)?;
        let m = &maps[i];
        (addr < m.end).then(|| m.clone())
    }

    fn kernel_ready(&mut self) -> bool {
        if let Some(ok) = self.kernel_usable {
            return ok;
        }
        let ok = (|| {
            let here = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
            let here_id = kernel_build_id_here();
            let same = match (&self.kernel_build_id, &here_id) {
                (Some(rec), Some(local)) => same_build_id(local, rec),
                _ => self.os_release.as_deref() == Some(here.trim()),
            };
            if !same {
                self.refused.push(format!(
                    "kernel frames: the capture's kernel ({}) is not this machine's ({})",
                    self.os_release.as_deref().unwrap_or("release unknown"),
                    here.trim()
                ));
                return None;
            }
            let text = std::fs::read_to_string("/proc/kallsyms").ok()?;
            let text_now = text.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                let addr = f.next()?;
                let _kind = f.next()?;
                (f.next()? == "_text").then(|| u64::from_str_radix(addr, 16).ok())?
            });
            let syms = match Kallsyms::parse(&text) {
                Ok(s) => s,
                Err(e) => {
                    self.refused.push(format!("kernel frames: {e}"));
                    return None;
                }
            };
            if let (Some(now), Some(then)) = (text_now, self.recorded_text) {
                self.kaslr_delta = now.wrapping_sub(then);
            }
            self.kallsyms = Some(syms);
            Some(())
        })()
        .is_some();
        self.kernel_usable = Some(ok);
        ok
    }

    fn kernel_frame(&mut self, addr: u64, sink: &mut StackSink) -> i64 {
        if let Some(&id) = self.kernel_frames.get(&addr) {
            return id;
        }
        let named = if self.kernel_ready() {
            self.kallsyms
                .as_ref()
                .and_then(|k| k.lookup(addr.wrapping_add(self.kaslr_delta)))
                .map(|(name, module)| (name.to_string(), module))
        } else {
            None
        };
        let (name, module) =
            named.unwrap_or_else(|| ("[unknown]".into(), "[kernel.kallsyms]".into()));
        let id = sink.frame_id(FrameRef {
            name: &name,
            module: Some(&module),
            kernel: true,
        });
        self.kernel_frames.insert(addr, id);
        id
    }

    fn user_frame(&mut self, pid: i32, addr: u64, sink: &mut StackSink) -> i64 {
        let Some(m) = self.mapping(pid, addr) else {
            return *self.unknown_frame.get_or_insert_with(|| {
                sink.frame_id(FrameRef {
                    name: "[unknown]",
                    module: None,
                    kernel: false,
                })
            });
        };
        let off = addr - m.start + m.pgoff;
        if let Some(&id) = self.user_frames.get(&(m.file, off)) {
            return id;
        }
        let file = &mut self.files[m.file];
        if file.elf.is_none() {
            file.elf = Some(load_elf(file, &mut self.refused));
        }
        let name = file
            .elf
            .as_mut()
            .and_then(Option::as_mut)
            .and_then(|elf| elf.symbolize(&[off]).pop().flatten());
        let id = sink.frame_id(FrameRef {
            name: name.as_deref().unwrap_or("[unknown]"),
            module: Some(&file.path),
            kernel: false,
        });
        self.user_frames.insert((m.file, off), id);
        id
    }
}

/// The ELF file of a mapping when it is here and is the file recorded.
fn load_elf(file: &MappedFile, refused: &mut Vec<String>) -> Option<ElfInfo> {
    if !file.path.starts_with('/') {
        // [vdso], [heap], anon: nothing to read here.
        return None;
    }
    let elf = match ElfInfo::load(&file.path) {
        Ok(elf) => elf,
        Err(e) => {
            refused.push(format!("{}: {e}", file.path));
            return None;
        }
    };
    if let (Some(rec), Some(local)) = (&file.recorded_build_id, &elf.build_id)
        && !same_build_id(local, rec)
    {
        refused.push(format!(
            "{}: build id {local} here, {rec} in the capture",
            file.path
        ));
        return None;
    }
    Some(elf)
}

/// The running kernel's GNU build id, from the ELF notes in /sys/kernel/notes.
fn kernel_build_id_here() -> Option<String> {
    let notes = std::fs::read("/sys/kernel/notes").ok()?;
    let mut at = 0usize;
    let word = |i: usize| -> Option<usize> {
        Some(u32::from_ne_bytes(notes.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    while at + 12 <= notes.len() {
        let (namesz, descsz, kind) = (word(at)?, word(at + 4)?, word(at + 8)?);
        let name_at = at + 12;
        let desc_at = name_at + namesz.next_multiple_of(4);
        let next = desc_at + descsz.next_multiple_of(4);
        if kind == 3 && notes.get(name_at..name_at + namesz)? == b"GNU\0" {
            return Some(hex(notes.get(desc_at..desc_at + descsz)?));
        }
        at = next;
    }
    None
}

fn text(raw: &RawData<'_>) -> String {
    String::from_utf8_lossy(&raw.as_slice()).into_owned()
}

/// The size of `perf_file_header`: magic, its own size, the attr size, the attrs, data and
/// event-types sections, and the 256-bit feature bitmap.
const HEADER_SIZE: u64 = 104;

/// Checks the file's header against its length before the reader sees it: the reader sizes
/// buffers from these fields and divides by the attr size, so a hostile or cut header must
/// not reach it.
pub fn check_header(file: &mut std::fs::File) -> anyhow::Result<()> {
    use std::io::SeekFrom;
    let len = file.metadata()?.len();
    let mut h = [0u8; HEADER_SIZE as usize];
    let got = file.read(&mut h)?;
    let le = match h.get(..8) {
        Some(b"PERFILE2") => true,
        Some(b"2ELIFREP") => false,
        _ => anyhow::bail!("not a perf.data file (no PERFILE2 magic)"),
    };
    let word = |i: usize| -> u64 {
        let b: [u8; 8] = h[i * 8..i * 8 + 8].try_into().unwrap_or_default();
        if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    };
    if got >= 16 && word(1) == 16 {
        anyhow::bail!(
            "a pipe-mode capture (perf record -o -): write it to a file with `perf inject -i FILE -o perf.data` and import that"
        );
    }
    if (got as u64) < HEADER_SIZE {
        anyhow::bail!("not a perf.data file: {got} bytes, shorter than its header");
    }
    let within = |offset: u64, size: u64| offset.checked_add(size).is_some_and(|end| end <= len);
    let (header_size, attr_size) = (word(1), word(2));
    let (attrs, attrs_size) = (word(3), word(4));
    let (data, data_size) = (word(5), word(6));
    if header_size < HEADER_SIZE || header_size > len {
        anyhow::bail!("not a perf.data file: header size {header_size}");
    }
    if !(64..=4096).contains(&attr_size) {
        anyhow::bail!("damaged perf.data header: event attributes of {attr_size} bytes");
    }
    if attrs_size % attr_size != 0 {
        anyhow::bail!(
            "damaged perf.data header: {attrs_size} bytes of event attributes are not a whole number of {attr_size}-byte attributes"
        );
    }
    if !within(attrs, attrs_size) || attrs_size / attr_size > 1 << 16 {
        anyhow::bail!("damaged perf.data header: the event attributes lie outside the file");
    }
    if !within(data, data_size) {
        anyhow::bail!(
            "the data section ends at byte {} of a {len}-byte file: the capture was cut (perf record did not finish?)",
            data.saturating_add(data_size)
        );
    }
    // One (offset, size) entry per feature bit, right after the data.
    let features = (9..13).map(|i| word(i).count_ones() as u64).sum::<u64>();
    let table = data + data_size;
    if !within(table, features * 16) {
        anyhow::bail!("damaged perf.data header: the feature table lies outside the file");
    }
    file.seek(SeekFrom::Start(table))?;
    let mut entries = vec![0u8; (features * 16) as usize];
    file.read_exact(&mut entries)?;
    for e in entries.chunks_exact(16) {
        let get = |b: &[u8]| {
            let b: [u8; 8] = b.try_into().unwrap_or_default();
            if le {
                u64::from_le_bytes(b)
            } else {
                u64::from_be_bytes(b)
            }
        };
        if !within(get(&e[..8]), get(&e[8..])) {
            anyhow::bail!(
                "damaged perf.data header: a feature section lies outside the file (cut short?)"
            );
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// Runs the perf.data reader, turning a panic inside it into an error (the crate trusts some
/// sizes [`check_header`] cannot reach) without its message on stderr.
pub fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(anyhow::anyhow!(
            "damaged perf.data the reader could not parse ({why})"
        ))
    })
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
    let mut sym = Symbolizer {
        os_release: perf_file.os_release().ok().flatten().map(str::to_string),
        ..Symbolizer::default()
    };
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
                }
                comms.insert(c.tid, text(&c.name));
            }
            EventRecord::Fork(f) => {
                if f.pid != f.ppid {
                    sym.fork(f.ppid, f.pid);
                }
                if let Some(parent) = comms.get(&f.ptid).cloned() {
                    comms.entry(f.tid).or_insert(parent);
                }
            }
            EventRecord::Mmap(m) if m.is_executable => {
                sym.add_mapping(m.pid, m.address, m.length, m.page_offset, &text(&m.path));
            }
            EventRecord::Mmap2(m) => {
                const PROT_EXEC: u32 = 4;
                if m.protection & PROT_EXEC != 0 || m.cpu_mode == CpuMode::Kernel {
                    let path = text(&m.path);
                    if let Mmap2FileId::BuildId(id) = &m.file_id {
                        sym.file_id(&path, Some(hex(id)));
                    }
                    sym.add_mapping(m.pid, m.address, m.length, m.page_offset, &path);
                }
            }
            EventRecord::Lost(l) => lost += l.count,
            EventRecord::Sample(s) => {
                frames.clear();
                let pid = s.pid.unwrap_or(-1);
                let tid = s.tid.unwrap_or(pid);
                if !callchain_frames(&s, pid, &mut sym, &mut sink, &mut frames) {
                    without_callchain += 1;
                }
                let ts_ns = s
                    .timestamp
                    .map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX));
                let cpu = s.cpu.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1);
                let comm = comms
                    .get(&tid)
                    .or_else(|| comms.get(&pid))
                    .map_or(":unknown", String::as_str);
                let comm = if comm == ":unknown" && pid == 0 {
                    "swapper"
                } else {
                    comm
                };
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
                    },
                    &frames,
                    writer,
                )?;
                report.records += 1;
                report.saw(ts_ns, (cpu >= 0).then_some(cpu));
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
    for why in &sym.refused {
        report.note(&format!("frames left [unknown]: {why}"));
    }
    Ok(())
}

/// Frame ids of a sample, leaf first. False when the sample has no callchain (its address is
/// its one frame, as perf script prints it).
fn callchain_frames(
    s: &SampleRecord<'_>,
    pid: i32,
    sym: &mut Symbolizer,
    sink: &mut StackSink,
    out: &mut Vec<i64>,
) -> bool {
    let kernel_mode = matches!(s.cpu_mode, CpuMode::Kernel | CpuMode::GuestKernel);
    let Some(chain) = &s.callchain else {
        if let Some(ip) = s.ip {
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
        out.push(if in_kernel || addr >= KERNEL_START {
            sym.kernel_frame(addr, sink)
        } else {
            sym.user_frame(pid, addr, sink)
        });
    }
    true
}

/// The event name as perf script prints it: modifiers dropped (`cycles:ppp` → `cycles`),
/// tracepoints kept whole (`sched:sched_switch`).
fn event_name(name: &str) -> &str {
    super::perf_script::event_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ids_compare_across_perf_padding() {
        assert!(same_build_id("abcd", "abcd00000000"));
        assert!(same_build_id("abcd", "abcd"));
        assert!(!same_build_id("abcd", "abce0000"));
        assert!(!same_build_id("abcd", "abcd0001"));
    }
}
