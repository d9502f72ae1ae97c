//! Naming the frames of a profile: each file's symbol table (the last few kept between segment
//! closes), its DWARF for inlined functions and source lines, kallsyms and JIT maps.

use std::collections::HashMap;

use super::{FrameKey, Profile, SYMBOL_TABLES_KEPT};
use crate::debuginfo::{DebugInfo, InlineFrame};
use crate::symbolize::{ElfInfo, PerfMap, demangle};

/// A `frame` row before it is written.
pub(super) struct FrameRow {
    pub(super) name: String,
    pub(super) module: String,
    pub(super) build_id: Option<String>,
    pub(super) rel_pc: u64,
    pub(super) kind: &'static str,
    pub(super) file: Option<String>,
    pub(super) line: Option<i32>,
}

impl Profile {
    /// How many functions are inlined at (file, offset), from the file's DWARF (0 without).
    pub(super) fn inline_depth(&mut self, file: u32, off: u64) -> u8 {
        // Files without DWARF (most) need no entry per address.
        if self.debug.get(&file).is_some_and(Option::is_none) {
            return 0;
        }
        if let Some(&d) = self.inline_depth.get(&(file, off)) {
            return d;
        }
        let d = self
            .inline_frames(file, off)
            .len()
            .saturating_sub(1)
            .min(u8::MAX as usize) as u8;
        self.inline_depth.insert((file, off), d);
        d
    }

    /// The functions at (file, offset), innermost first (empty without DWARF).
    pub(super) fn inline_frames(&mut self, file: u32, off: u64) -> Vec<InlineFrame> {
        let Some(svma) = self.elf(file).and_then(|e| e.svma(off)) else {
            return Vec::new();
        };
        if !self.debug.contains_key(&file) {
            // Not the recorder's own binary: reading its DWARF would be disk I/O of the
            // recorder during the capture (its own pid is left out of ftrace, so only the
            // completions would be seen), to name frames nobody profiles it for.
            let own = std::env::current_exe()
                .ok()
                .is_some_and(|exe| exe.to_str() == Some(self.files[file as usize].as_str()));
            let found = if own {
                None
            } else {
                self.elf(file).and_then(|e| DebugInfo::find(&e.debug))
            };
            self.debug.insert(file, found);
        }
        match &self.debug[&file] {
            Some(d) => d.frames(svma),
            None => Vec::new(),
        }
    }

    pub(super) fn elf(&mut self, file: u32) -> Option<&ElfInfo> {
        let path = &self.files[file as usize];
        self.elves
            .entry(file)
            .or_insert_with(|| ElfInfo::load(path).ok())
            .as_ref()
    }

    /// The row of a frame; file frames get their names from `file_names`, looked up per file
    /// in one pass (see `flush`), and their inlined functions and lines from the file's DWARF.
    pub(super) fn symbolize(
        &mut self,
        key: FrameKey,
        file_names: &mut HashMap<FrameKey, Option<String>>,
    ) -> FrameRow {
        let row = |name: String, module: String, rel_pc: u64, kind: &'static str| FrameRow {
            name,
            module,
            build_id: None,
            rel_pc,
            kind,
            file: None,
            line: None,
        };
        match key {
            FrameKey::Kernel(addr) => match self.kallsyms.as_ref().and_then(|k| k.lookup(addr)) {
                Some((name, module)) => row(name.to_string(), module, addr, "kernel"),
                None => row(
                    "[unknown]".into(),
                    "[kernel.kallsyms]".into(),
                    addr,
                    "kernel",
                ),
            },
            FrameKey::File(file, off) | FrameKey::Inlined(file, off, _) => {
                let module = self.files[file as usize].clone();
                let build_id = self.elf(file).and_then(|e| e.build_id.clone());
                let mut inlined = self.inline_frames(file, off);
                // The real function is the last (outermost) of the address's frames; level k
                // the k-th inlined into it.
                let at = match key {
                    FrameKey::Inlined(_, _, level) => inlined.len().checked_sub(1 + level as usize),
                    _ => inlined.len().checked_sub(1),
                };
                let dwarf = at.map(|i| inlined.swap_remove(i));
                let name = match key {
                    FrameKey::File(..) => file_names.remove(&key).flatten(),
                    _ => None,
                }
                .or_else(|| dwarf.as_ref().and_then(|d| d.name.as_deref().map(demangle)));
                FrameRow {
                    name: name.unwrap_or_else(|| "[unknown]".into()),
                    module,
                    build_id,
                    rel_pc: off,
                    kind: "user",
                    file: dwarf.as_ref().and_then(|d| d.file.clone()),
                    line: dwarf.and_then(|d| d.line).map(|l| l as i32),
                }
            }
            FrameKey::Jit(pid, addr) => {
                if !self.perf_maps.contains_key(&pid) {
                    let uids = self.jit_uids.get(&pid).map_or(&[][..], Vec::as_slice);
                    let map = PerfMap::load(pid, uids).unwrap_or_else(|why| {
                        if self.perf_maps_refused_pids.insert(pid) {
                            self.perf_maps_refused.push((pid, why));
                        }
                        None
                    });
                    self.perf_maps.insert(pid, map);
                }
                let name = self.perf_maps[&pid]
                    .as_ref()
                    .and_then(|m| m.lookup(addr))
                    .map(str::to_string);
                let module = PerfMap::path(pid);
                row(
                    name.unwrap_or_else(|| "[unknown]".into()),
                    module,
                    addr,
                    "user",
                )
            }
            FrameKey::Unknown(_, addr) => {
                row("[unknown]".into(), "[unknown]".into(), addr, "unknown")
            }
            FrameKey::Truncated => row("[truncated]".into(), "[truncated]".into(), 0, "unknown"),
        }
    }

    /// Names of the new file frames, reading each file's symbol table once.
    pub(super) fn name_file_frames(&mut self) -> HashMap<FrameKey, Option<String>> {
        let mut by_file: HashMap<u32, Vec<u64>> = HashMap::new();
        for key in &self.frame_keys[self.frames_written..] {
            if let FrameKey::File(f, off) = *key {
                by_file.entry(f).or_default().push(off);
            }
        }
        let mut names = HashMap::new();
        let mut by_file: Vec<(u32, Vec<u64>)> = by_file.into_iter().collect();
        by_file.sort_unstable_by_key(|(f, _)| *f);
        for (file, offsets) in by_file {
            self.elf(file);
            let found = match self.elves.get_mut(&file).and_then(Option::as_mut) {
                Some(elf) => elf.symbolize(&offsets),
                None => vec![None; offsets.len()],
            };
            // The symbol tables of the files symbolized last stay cached.
            self.symbol_tables.retain(|&f| f != file);
            self.symbol_tables.push_front(file);
            if self.symbol_tables.len() > SYMBOL_TABLES_KEPT
                && let Some(old) = self.symbol_tables.pop_back()
                && let Some(Some(e)) = self.elves.get_mut(&old)
            {
                e.forget_table();
            }
            for (off, name) in offsets.into_iter().zip(found) {
                names.insert(FrameKey::File(file, off), name);
            }
        }
        names
    }
}
