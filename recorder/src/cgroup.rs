//! Which cgroup each sample's task was in. The kernel gives each sample its task's cgroup (v2)
//! id (`PERF_SAMPLE_CGROUP`, Linux 5.7+): the inode of the cgroup's directory under the cgroup2
//! mount. A `task_cgroup` row is written when a thread is first sampled and whenever a sample
//! shows it in another cgroup; a `cgroup` row names each id by its path, looked up by walking
//! the mount when the id is first written (a cgroup removed before that is `[removed]`).

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
            let found = match &self.root {
                Some(root) => paths_of(root, &self.unnamed),
                None => HashMap::new(),
            };
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
    use super::container_id;

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
