//! Symbolization on the recording box: ELF symbol tables (with the build-id debug file where
//! the binary is stripped), /proc/kallsyms for the kernel, /tmp/perf-PID.map for JIT code, and
//! Rust/C++ demangling. Each ELF is read once per recording; lookups are binary searches.

use std::collections::HashMap;

use object::{Object, ObjectSegment, ObjectSymbol, ObjectSymbolTable, SymbolIndex, SymbolKind};

/// A symbol: start address, size (0 when unknown) and demangled name.
#[derive(Debug, Clone)]
struct Sym<N = String> {
    addr: u64,
    size: u64,
    name: N,
}

/// Sorted symbols with a nearest-below lookup. The start addresses are kept apart from the
/// rest so that the binary search walks one compact array (kallsyms has ~100 k entries).
#[derive(Debug)]
struct SymTable<N = String> {
    addrs: Vec<u64>,
    syms: Vec<Sym<N>>,
}

impl<N> Default for SymTable<N> {
    fn default() -> Self {
        SymTable {
            addrs: Vec::new(),
            syms: Vec::new(),
        }
    }
}

impl<N> SymTable<N> {
    fn new(mut syms: Vec<Sym<N>>) -> Self {
        syms.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.size.cmp(&a.size)));
        syms.dedup_by_key(|s| s.addr);
        SymTable {
            addrs: syms.iter().map(|s| s.addr).collect(),
            syms,
        }
    }

    fn lookup(&self, addr: u64) -> Option<&Sym<N>> {
        let i = self.addrs.partition_point(|&a| a <= addr);
        let s = self.syms.get(i.checked_sub(1)?)?;
        (s.size == 0 || addr < s.addr + s.size).then_some(s)
    }
}

/// Demangles Rust (legacy and v0) and C++ (Itanium) names; others pass through.
pub fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z")
        && let Ok(sym) = cpp_demangle::Symbol::new(name)
        && let Ok(d) = sym.demangle()
    {
        return d;
    }
    name.to_string()
}

/// What the recorder keeps of one ELF file for the whole recording: small facts, and its symbol
/// table while the profile keeps it cached (the files most recently symbolized; see
/// `Profile::name_file_frames`), so memory does not grow with the size of every binary ever
/// sampled and a segment close does not sort the same tables again.
#[derive(Debug, Default)]
pub struct ElfInfo {
    /// GNU build id in hex.
    pub build_id: Option<String>,
    /// Whether functions keep frame pointers (x86_64 prologue check); `None` when unknown.
    pub frame_pointers: Option<bool>,
    /// PT_LOAD segments: (file offset, file size, virtual address).
    loads: Vec<(u64, u64, u64)>,
    /// Where the symbols are: the file itself, or its build-id debug file when stripped.
    symbols_from: Option<String>,
    /// What finding its DWARF needs (inlined frames, source lines).
    pub debug: crate::debuginfo::Wanted,
    /// The symbol table while cached: the mapped file its entries index, and its text symbols
    /// by address.
    table: Option<(crate::sys::MappedFile, SymTable<SymRef>)>,
    /// The table is kept whatever the cache does (see [`ElfInfo::pin_table`]).
    pinned: bool,
}

impl ElfInfo {
    /// Reads an ELF file's build id, segments and frame-pointer verdict.
    pub fn load(path: &str) -> Result<ElfInfo, String> {
        let data = crate::sys::MappedFile::open(path).map_err(|e| e.to_string())?;
        let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
        let build_id = file
            .build_id()
            .ok()
            .flatten()
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>());
        let loads: Vec<(u64, u64, u64)> = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, size, s.address())
            })
            .collect();
        // (address, size) of each function: all the frame-pointer check needs (names are not
        // read: finding where each name ends is most of the cost of a symbol table).
        let spans = |syms: Vec<Sym<SymRef>>| {
            syms.into_iter()
                .map(|s| (s.addr, s.size))
                .collect::<Vec<_>>()
        };
        let mut syms = spans(text_symbols(&file));
        let mut symbols_from = (!syms.is_empty()).then(|| path.to_string());
        // A stripped file keeps only its exported functions (.dynsym); its build-id debug
        // file (Debian's -dbg packages) names the static ones too (`__libc_start_call_main`),
        // as perf names them.
        if file.symbol_table().is_none()
            && let Some(debug) = build_id
                .as_deref()
                .and_then(crate::debuginfo::build_id_debug_path)
            && let Ok(d) = crate::sys::MappedFile::open(&debug)
            && let Ok(f) = object::File::parse(&*d)
        {
            let from_debug = spans(text_symbols(&f));
            if !from_debug.is_empty() {
                syms = from_debug;
                symbols_from = Some(debug);
            }
        }
        let frame_pointers = detect_frame_pointers(&file, &data, &syms, &loads);
        let debug =
            crate::debuginfo::Wanted {
                path: path.to_string(),
                build_id: file.build_id().ok().flatten().map(<[u8]>::to_vec),
                has_dwarf: file.section_by_name(".debug_info").is_some(),
                debuglink: file.gnu_debuglink().ok().flatten().and_then(|(name, crc)| {
                    Some((std::str::from_utf8(name).ok()?.to_string(), crc))
                }),
            };
        Ok(ElfInfo {
            build_id,
            frame_pointers,
            loads,
            symbols_from,
            debug,
            table: None,
            pinned: false,
        })
    }

    /// The address (as the file states it) of a file offset, where a segment maps it.
    pub fn svma(&self, off: u64) -> Option<u64> {
        let (foff, _, vaddr) = self
            .loads
            .iter()
            .find(|(o, size, _)| off >= *o && off < o + size)?;
        Some(off - foff + vaddr)
    }

    /// Names of the functions containing each file offset (`None` where no symbol covers it).
    /// Only the names of the symbols found are read and demangled.
    pub fn symbolize(&mut self, offsets: &[u64]) -> Vec<Option<String>> {
        if self.table.is_none() {
            let data = self
                .symbols_from
                .as_deref()
                .and_then(|p| crate::sys::MappedFile::open(p).ok());
            self.table = data.and_then(|d| {
                let table = SymTable::new(text_symbols(&object::File::parse(&*d).ok()?));
                Some((d, table))
            });
        }
        // Parsing the headers again is cheap; the symbols are not walked.
        let Some((data, table)) = &self.table else {
            return vec![None; offsets.len()];
        };
        let Ok(file) = object::File::parse(&**data) else {
            return vec![None; offsets.len()];
        };
        let dynamic = file.dynamic_symbol_table();
        offsets
            .iter()
            .map(|&off| {
                let sym = table.lookup(self.svma(off)?)?;
                let name = match sym.name {
                    SymRef::Static(i) => file.symbol_by_index(i).ok()?.name().ok()?,
                    SymRef::Dynamic(i) => dynamic.as_ref()?.symbol_by_index(i).ok()?.name().ok()?,
                };
                Some(demangle(name))
            })
            .collect()
    }

    /// Drops the cached symbol table (it is read again when next needed), unless pinned.
    pub fn forget_table(&mut self) {
        if !self.pinned {
            self.table = None;
        }
    }

    /// Reads the symbol table now and keeps it for the recording: the file is reachable only
    /// while its process lives (a deleted binary through `/proc/PID/map_files`).
    pub fn pin_table(&mut self) {
        self.symbolize(&[]);
        self.pinned = true;
    }
}

/// Where a symbol is: its index in the static or the dynamic symbol table.
#[derive(Debug, Clone, Copy)]
enum SymRef {
    Static(SymbolIndex),
    Dynamic(SymbolIndex),
}

/// Function symbols of a file, without their names (read later, for the symbols hit). Where
/// several name one address (`malloc`, `__libc_malloc`, `__GI___libc_malloc`), the global one
/// comes first, then weak, then local, as perf chooses: [`SymTable::new`] keeps the first.
fn text_symbols(file: &object::File<'_>) -> Vec<Sym<SymRef>> {
    let text = |s: &object::Symbol<'_, '_>| s.kind() == SymbolKind::Text && s.address() != 0;
    let rank = |s: &object::Symbol<'_, '_>| {
        if s.is_weak() {
            1u8
        } else if s.is_global() {
            0
        } else {
            2
        }
    };
    let mut syms: Vec<(u8, Sym<SymRef>)> = file
        .symbols()
        .filter(text)
        .map(|s| {
            (
                rank(&s),
                Sym {
                    addr: s.address(),
                    size: s.size(),
                    name: SymRef::Static(s.index()),
                },
            )
        })
        .chain(file.dynamic_symbols().filter(text).map(|s| {
            (
                rank(&s),
                Sym {
                    addr: s.address(),
                    size: s.size(),
                    name: SymRef::Dynamic(s.index()),
                },
            )
        }))
        .collect();
    syms.sort_by_key(|(rank, _)| *rank);
    syms.into_iter().map(|(_, s)| s).collect()
}

/// Samples up to 256 functions and checks for the `push %rbp; mov %rsp,%rbp` prologue
/// (optionally after `endbr64`). Mostly present: frame pointers kept; mostly absent: omitted.
fn detect_frame_pointers(
    file: &object::File<'_>,
    data: &[u8],
    syms: &[(u64, u64)],
    loads: &[(u64, u64, u64)],
) -> Option<bool> {
    if file.architecture() != object::Architecture::X86_64 {
        return None;
    }
    let candidates: Vec<&(u64, u64)> = syms.iter().filter(|s| s.1 >= 16).collect();
    if candidates.len() < 8 {
        return None;
    }
    let step = (candidates.len() / 256).max(1);
    let (mut with, mut total) = (0, 0);
    for s in candidates.iter().step_by(step) {
        let Some((foff, _, vaddr)) = loads
            .iter()
            .find(|(_, size, va)| s.0 >= *va && s.0 < va + size)
        else {
            continue;
        };
        let at = (s.0 - vaddr + foff) as usize;
        let Some(code) = data.get(at..at + 8) else {
            continue;
        };
        let code = code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa]).unwrap_or(code);
        total += 1;
        if code.starts_with(&[0x55, 0x48, 0x89, 0xe5]) {
            with += 1;
        }
    }
    if total < 8 {
        return None;
    }
    let share = with as f64 / total as f64;
    if share >= 0.5 {
        Some(true)
    } else if share < 0.2 {
        Some(false)
    } else {
        None
    }
}

/// /proc/kallsyms: kernel and module text symbols.
#[derive(Debug, Default)]
pub struct Kallsyms {
    syms: SymTable,
    /// Module of each symbol start address that belongs to a module.
    modules: HashMap<u64, String>,
}

impl Kallsyms {
    /// Reads /proc/kallsyms. Fails when addresses are hidden (kptr_restrict).
    pub fn load() -> Result<Kallsyms, String> {
        let text = std::fs::read_to_string("/proc/kallsyms")
            .map_err(|e| format!("/proc/kallsyms: {e}"))?;
        Self::parse(&text)
    }

    /// Parses the text of a /proc/kallsyms.
    pub fn parse(text: &str) -> Result<Kallsyms, String> {
        let mut syms = Vec::new();
        let mut modules = HashMap::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr == 0 {
                continue;
            }
            if let Some(m) = f.next() {
                modules.insert(addr, m.trim_matches(|c| c == '[' || c == ']').to_string());
            }
            syms.push(Sym {
                addr,
                size: 0,
                name: name.to_string(),
            });
        }
        if syms.is_empty() {
            return Err("/proc/kallsyms shows no addresses (kernel.kptr_restrict?)".into());
        }
        Ok(Kallsyms {
            syms: SymTable::new(syms),
            modules,
        })
    }

    /// Function name and module (`[kernel.kallsyms]` or `[module]`) of a kernel address.
    pub fn lookup(&self, addr: u64) -> Option<(&str, String)> {
        let s = self.syms.lookup(addr)?;
        let module = self
            .modules
            .get(&s.addr)
            .map_or_else(|| "[kernel.kallsyms]".to_string(), |m| format!("[{m}]"));
        Some((s.name.as_str(), module))
    }
}

/// A JIT's `/tmp/perf-PID.map` (`START SIZE name` in hex, one per line).
#[derive(Debug, Default)]
pub struct PerfMap(SymTable);

impl PerfMap {
    /// The largest map read (a JVM with perf-map-agent writes tens of MiB).
    pub const MAX_LEN: u64 = 256 << 20;

    /// The path a JIT writes its map to.
    pub fn path(pid: i32) -> String {
        format!("/tmp/perf-{pid}.map")
    }

    /// Reads the map of `pid`: `Ok(None)` when the process wrote none, `Err` with the reason
    /// when one is there but refused. `/tmp` is anyone's, so a map is read only when it is a
    /// regular file (not a link, FIFO or device) of at most [`PerfMap::MAX_LEN`] bytes, owned
    /// by root or by one of `uids` (the process's real, effective, saved and filesystem uids,
    /// taken while it ran): a map another user wrote must not name a process's frames.
    pub fn load(pid: i32, uids: &[u32]) -> Result<Option<PerfMap>, String> {
        Self::read(&Self::path(pid), pid, uids)
    }

    fn read(path: &str, pid: i32, uids: &[u32]) -> Result<Option<PerfMap>, String> {
        use std::io::Read as _;
        use std::os::unix::fs::MetadataExt as _;
        let (file, meta) = match crate::sys::open_regular(path, Self::MAX_LEN, true) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{path}: {e}")),
        };
        if meta.uid() != 0 && !uids.contains(&meta.uid()) {
            let who = if uids.is_empty() {
                "a process whose uid is not known".to_string()
            } else {
                format!("process {pid}, which runs as uid {}", uids[0])
            };
            return Err(format!(
                "{path}: owned by uid {}, not by root or {who}",
                meta.uid()
            ));
        }
        let mut text = Vec::with_capacity(meta.len() as usize);
        file.take(Self::MAX_LEN)
            .read_to_end(&mut text)
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(Some(Self::parse(&String::from_utf8_lossy(&text))))
    }

    fn parse(text: &str) -> PerfMap {
        let syms = text
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ' ');
                let addr = u64::from_str_radix(f.next()?.trim_start_matches("0x"), 16).ok()?;
                let size = u64::from_str_radix(f.next()?.trim_start_matches("0x"), 16).ok()?;
                Some(Sym {
                    addr,
                    size,
                    name: f.next()?.to_string(),
                })
            })
            .collect();
        PerfMap(SymTable::new(syms))
    }

    /// The JIT function at `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        self.0.lookup(addr).map(|s| s.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_rust_and_cpp() {
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(
            demangle("_ZN9Namespace5Class6methodEi"),
            "Namespace::Class::method(int)"
        );
        assert_eq!(demangle("main"), "main");
    }

    #[test]
    fn a_perf_map_is_read_only_from_a_regular_file_its_process_owns() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = std::env::temp_dir().join(format!("perfpack-perfmap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let at = |name: &str| dir.join(name).to_str().unwrap().to_string();
        let me = unsafe { libc::geteuid() };
        std::fs::write(at("good.map"), "1000 10 hot_loop\n").unwrap();
        let map = PerfMap::read(&at("good.map"), 7, &[me]).unwrap().unwrap();
        assert_eq!(map.lookup(0x1008), Some("hot_loop"));
        // None written: not an error.
        assert!(
            PerfMap::read(&at("absent.map"), 7, &[me])
                .unwrap()
                .is_none()
        );
        // A FIFO must neither hang the recorder nor be read.
        let fifo = std::ffi::CString::new(at("fifo.map")).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let e = PerfMap::read(&at("fifo.map"), 7, &[me]).unwrap_err();
        assert!(e.ends_with("fifo.map: not a regular file"), "{e}");
        // A link (to /dev/zero, which would never end) is refused as a link.
        std::os::unix::fs::symlink("/dev/zero", at("zero.map")).unwrap();
        let e = PerfMap::read(&at("zero.map"), 7, &[me]).unwrap_err();
        assert!(e.ends_with("zero.map: a symbolic link"), "{e}");
        // A map another user wrote for the process.
        let other = if me == 0 {
            let path = std::ffi::CString::new(at("good.map")).unwrap();
            assert_eq!(unsafe { libc::chown(path.as_ptr(), 4242, 4242) }, 0);
            assert_eq!(std::fs::metadata(at("good.map")).unwrap().uid(), 4242);
            1000
        } else {
            me + 1
        };
        let e = PerfMap::read(&at("good.map"), 7, &[other]).unwrap_err();
        let owner = std::fs::metadata(at("good.map")).unwrap().uid();
        assert!(
            e.ends_with(&format!(
                "good.map: owned by uid {owner}, not by root or process 7, which runs as uid {other}"
            )),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kallsyms_and_perf_maps_resolve_to_the_nearest_symbol_below() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81001000 t do_idle\nffffffffc0000000 t nvme_queue_rq\t[nvme]\n",
        )
        .unwrap();
        assert_eq!(
            k.lookup(0xffff_ffff_8100_1010).unwrap(),
            ("do_idle", "[kernel.kallsyms]".to_string())
        );
        assert_eq!(
            k.lookup(0xffff_ffff_c000_0004).unwrap(),
            ("nvme_queue_rq", "[nvme]".to_string())
        );
        assert!(Kallsyms::parse("0000000000000000 T _stext\n").is_err());

        let m = PerfMap::parse("7f0010 40 Lcom/example/Foo;::bar\n7f0100 10 stub\n");
        assert_eq!(m.lookup(0x7f0020), Some("Lcom/example/Foo;::bar"));
        assert_eq!(m.lookup(0x7f0060), None);
    }

    #[test]
    fn reads_own_binary_symbols_and_build_id() {
        let exe = std::env::current_exe().unwrap();
        let mut info = ElfInfo::load(exe.to_str().unwrap()).unwrap();
        assert!(info.build_id.is_some());
        // Built with frame pointers (.cargo/config.toml).
        assert_eq!(info.frame_pointers, Some(true));
        let main_off = info
            .loads
            .iter()
            .find(|l| l.1 > 0 && l.0 > 0)
            .map(|l| l.0 + 16)
            .unwrap();
        assert_eq!(info.symbolize(&[main_off, u64::MAX]).len(), 2);
    }
}
