//! Names of a perf.data capture's addresses: its mappings followed through mmap, fork and exec
//! records, user frames from the ELF files here when their build ids match, kernel frames from
//! this machine's kallsyms when its kernel is the one recorded.

use perfpack_recorder::symbolize::{ElfInfo, Kallsyms};
use perfpack_recorder::unwind::MapRef;
use perfpack_schema::fxhash::FxHashMap;

use crate::import::stacks::{FrameRef, StackSink};

/// The lowest kernel address on x86_64 (the canonical upper half).
pub(super) const KERNEL_START: u64 = 0xffff_8000_0000_0000;

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
pub(super) struct Symbolizer {
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
    pub(super) kernel_build_id: Option<String>,
    os_release: Option<String>,
    /// Files whose frames stay unnamed, with why.
    pub(super) refused: Vec<String>,
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a local build id (full length) is the one recorded (perf pads to 20 bytes).
fn same_build_id(local: &str, recorded: &str) -> bool {
    recorded.starts_with(local) && recorded[local.len()..].bytes().all(|b| b == b'0')
}

impl Symbolizer {
    /// A symbolizer for a capture of the kernel release `os_release` (its header's).
    pub(super) fn new(os_release: Option<String>) -> Self {
        Symbolizer {
            os_release,
            ..Symbolizer::default()
        }
    }

    pub(super) fn file_id(&mut self, path: &str, recorded_build_id: Option<String>) -> usize {
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

    pub(super) fn add_mapping(&mut self, pid: i32, start: u64, len: u64, pgoff: u64, path: &str) {
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
    pub(super) fn fork(&mut self, parent: i32, child: i32) {
        if parent == child {
            return;
        }
        if let Some(maps) = self.maps.get(&parent).cloned() {
            self.maps.insert(child, maps);
            self.sorted.insert(child, false);
        }
    }

    pub(super) fn exec(&mut self, pid: i32) {
        self.maps.remove(&pid);
    }

    /// The executable mappings of `pid` for the unwinder: a file is given only when it is here
    /// and is the file recorded (its build id checked), so a stack is never walked over the
    /// unwind tables of a different build.
    pub(super) fn unwind_maps(&mut self, pid: i32) -> Vec<MapRef<'_>> {
        let Some(maps) = self.maps.get(&pid) else {
            return Vec::new();
        };
        for m in maps {
            let file = &mut self.files[m.file];
            if file.elf.is_none() {
                file.elf = Some(load_elf(file, &mut self.refused));
            }
        }
        maps.iter()
            .map(|m| {
                let file = &self.files[m.file];
                let usable = matches!(file.elf, Some(Some(_)));
                MapRef {
                    start: m.start,
                    end: m.end,
                    pgoff: m.pgoff,
                    file: usable.then_some((m.file as u32, file.path.as_str())),
                }
            })
            .collect()
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

    pub(super) fn kernel_frame(&mut self, addr: u64, sink: &mut StackSink) -> i64 {
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

    pub(super) fn user_frame(&mut self, pid: i32, addr: u64, sink: &mut StackSink) -> i64 {
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
