//! Which cgroup each sample's task was in. The kernel gives each sample its task's cgroup (v2)
//! id (`PERF_SAMPLE_CGROUP`, Linux 5.7+): the inode of the cgroup's directory under the cgroup2
//! mount. A `task_cgroup` row is written when a thread is first sampled and whenever a sample
//! shows it in another cgroup; a `cgroup` row names each id by its path, looked up by walking
//! the mount when the id is first written (a cgroup removed before that is `[removed]`).
//! Where the kernel does not give the id (before 5.7), each thread's `/proc/TID/cgroup` is
//! read when it is first sampled and again after it execs: the id is then the inode of that
//! path under the mount.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use perfpack_schema::BundleWriter;
use perfpack_schema::fxhash::FxHashMap;
use perfpack_schema::tables::{self, Cgroup, CgroupBuilder, TaskCgroup, TaskCgroupBuilder};

/// Most directories walked under the mount per lookup (a box with more cgroups than this has
/// the rest named `[removed]`).
const MAX_DIRS: usize = 100_000;

/// Threads remembered before the map starts again (each thread then gets a fresh row).
const MAX_THREADS: usize = 1 << 16;

/// The cgroups of a recording.
#[derive(Default)]
pub struct Cgroups {
    /// tid → the cgroup of its last sample.
    of_tid: FxHashMap<i32, u64>,
    rows: TaskCgroupBuilder,
    /// Ids sampled whose `cgroup` row is not written yet.
    unnamed: BTreeSet<u64>,
    /// Ids whose row is written.
    named: BTreeSet<u64>,
    /// The cgroup2 mount, when there is one.
    root: Option<PathBuf>,
    /// Read `/proc/TID/cgroup` (the samples carry no cgroup id).
    from_procfs: bool,
    /// Paths already known from procfs, by id.
    known: HashMap<u64, String>,
}

impl std::fmt::Debug for Cgroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroups")
            .field("threads", &self.of_tid.len())
            .field("named", &self.named.len())
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Cgroups {
    pub fn new() -> Cgroups {
        Cgroups {
            root: cgroup2_mount(),
            ..Cgroups::default()
        }
    }

    /// Whether each thread's cgroup is read from procfs (the kernel gives none per sample).
    pub fn read_procfs(&mut self, yes: bool) {
        self.from_procfs = yes;
    }

    /// A sample without a cgroup id: the thread's cgroup from `/proc/PID/task/TID/cgroup`,
    /// read the first time the thread is seen (and after [`Cgroups::forget`]).
    pub fn sample_without_id(&mut self, ts_ns: i64, pid: i32, tid: i32) {
        if !self.from_procfs || self.of_tid.contains_key(&tid) {
            return;
        }
        let Some(root) = &self.root else { return };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/cgroup")) else {
            return;
        };
        let Some(path) = v2_path(&text) else { return };
        let Ok(meta) = std::fs::symlink_metadata(root.join(path.trim_start_matches('/'))) else {
            return;
        };
        if meta.is_dir() {
            self.known.insert(meta.ino(), path.to_string());
            self.sample(ts_ns, pid, tid, meta.ino());
        }
    }

    /// Forgets a thread's cgroup (it exec'd): its next sample reads it again.
    pub fn forget(&mut self, tid: i32) {
        if self.from_procfs {
            self.of_tid.remove(&tid);
        }
    }

    /// One sample of `tid` (of `pid`) at `ts_ns` in cgroup `id`.
    pub fn sample(&mut self, ts_ns: i64, pid: i32, tid: i32, id: u64) {
        if self.of_tid.get(&tid) == Some(&id) {
            return;
        }
        if self.of_tid.len() >= MAX_THREADS {
            self.of_tid.clear();
        }
        self.of_tid.insert(tid, id);
        self.rows.push(&TaskCgroup {
            ts_ns,
            pid,
            tid,
            cgroup_id: id,
        });
        if !self.named.contains(&id) {
            self.unnamed.insert(id);
        }
    }

    /// Writes the pending `task_cgroup` rows and a `cgroup` row for each id not named yet.
    pub fn flush(&mut self, w: &mut BundleWriter) -> perfpack_schema::Result<()> {
        let mut names = CgroupBuilder::default();
        if !self.unnamed.is_empty() {
            let unknown: BTreeSet<u64> = self
                .unnamed
                .iter()
                .filter(|id| !self.known.contains_key(id))
                .copied()
                .collect();
            let mut found = match &self.root {
                Some(root) if !unknown.is_empty() => paths_of(root, &unknown),
                _ => HashMap::new(),
            };
            found.extend(self.known.iter().map(|(id, p)| (*id, p.clone())));
            for id in std::mem::take(&mut self.unnamed) {
                let path = found.get(&id).map_or("[removed]", String::as_str);
                names.push(&Cgroup {
                    cgroup_id: id,
                    path,
                    container_id: container_id(path).as_deref(),
                });
                self.named.insert(id);
            }
        }
        w.append(tables::CGROUP, names.finish())?;
        w.append(tables::TASK_CGROUP, std::mem::take(&mut self.rows).finish())?;
        Ok(())
    }
}

/// The cgroup2 mount point from `/proc/self/mountinfo`: `/sys/fs/cgroup` on a v2 system,
/// `/sys/fs/cgroup/unified` on a hybrid one.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER`
        let (left, right) = line.split_once(" - ")?;
        let point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(unescape(point)))
    })
}

/// The cgroup v2 path of a `/proc/PID/cgroup` text: its `0::PATH` line.
fn v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        match rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The paths (under `root`, `/` for the root) of the cgroups `wanted`, by walking the mount's
/// directories: a cgroup's id is its directory's inode. Symbolic links are not followed (the
/// cgroup filesystem has none), and at most [`MAX_DIRS`] directories are read.
fn paths_of(root: &Path, wanted: &BTreeSet<u64>) -> HashMap<u64, String> {
    let mut found = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), String::from("/"))];
    let mut dirs = 0;
    while let Some((dir, rel)) = stack.pop() {
        dirs += 1;
        if dirs > MAX_DIRS || found.len() == wanted.len() {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        if wanted.contains(&meta.ino()) {
            found.insert(meta.ino(), rel.clone());
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel == "/" {
                    format!("/{name}")
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((e.path(), child));
            }
        }
    }
    found
}

/// The container id a cgroup path names: the 64-hex-digit id in its last component that has
/// one (`docker-ID.scope`, `/docker/ID`, `cri-containerd-ID.scope`, `crio-ID.scope`,
/// `libpod-ID.scope`, a kubepods pod's container scope).
pub fn container_id(path: &str) -> Option<String> {
    path.rsplit('/').find_map(|part| {
        let bytes = part.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let run = bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                .count();
            if run == 64 {
                return Some(part[i..i + 64].to_string());
            }
            i += run.max(1);
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_cgroup_is_read_from_procfs_where_samples_carry_none() {
        let hybrid = "9:name=systemd:/\n4:memory:/x\n1:cpu:/\n0::/system.slice/a.service\n";
        assert_eq!(v2_path(hybrid), Some("/system.slice/a.service"));
        assert_eq!(v2_path("0::/\n"), Some("/"));
        assert_eq!(v2_path("4:memory:/x\n"), None);
        // This thread, as the recorder would read it: the id is its cgroup directory's inode.
        let mut c = Cgroups::new();
        let Some(root) = c.root.clone() else {
            return; // no cgroup2 mount here: nothing to read
        };
        c.read_procfs(true);
        let (pid, tid) = (std::process::id() as i32, unsafe { libc::gettid() });
        c.sample_without_id(1, pid, tid);
        let own = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/cgroup")).unwrap();
        let path = v2_path(&own).unwrap();
        let ino = std::fs::metadata(root.join(path.trim_start_matches('/')))
            .unwrap()
            .ino();
        assert_eq!(c.of_tid.get(&tid), Some(&ino));
        assert_eq!(c.known.get(&ino).map(String::as_str), Some(path));
        // Seen once: a second sample adds no row, until the thread execs.
        c.sample_without_id(2, pid, tid);
        c.forget(tid);
        c.sample_without_id(3, pid, tid);
        assert_eq!(c.rows.len(), 2);
    }

    #[test]
    fn container_ids_come_from_the_usual_layouts() {
        let id = "3f4e".repeat(16);
        for path in [
            format!("/system.slice/docker-{id}.scope"),
            format!("/docker/{id}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{id}.scope"
            ),
            format!("/machine.slice/libpod-{id}.scope/container"),
            format!("/kubepods/besteffort/pod1234/{id}"),
            format!("/system.slice/crio-{id}.scope"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some(id.as_str()), "{path}");
        }
        for path in [
            "/system.slice/ssh.service",
            "/user.slice/user-1000.slice/session-2.scope",
            "/",
            "[removed]",
        ] {
            assert_eq!(container_id(path), None, "{path}");
        }
        // 63 or 65 hex digits are not an id.
        assert_eq!(container_id(&format!("/docker/{}", &id[1..])), None);
        assert_eq!(container_id(&format!("/docker/{id}0")), None);
    }
}
