//! `perfpack-record -- CMD ARGS`: CMD is started held before its exec, so that its sampling
//! events (inherited by every process it starts) exist before it runs an instruction of its
//! own, and released once the recorder records, as perf does. The recording ends when CMD
//! exits, and the recorder exits with CMD's status.
//!
//! CMD is found before anything is set up (127 when not found, 126 when not executable, as a
//! shell says, and no bundle is created). Under sudo it runs as the user who ran sudo
//! (`SUDO_UID`/`SUDO_GID`) unless `--as-root`. Nothing of it goes through a shell.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// The pid of the running CMD, for the signal handler: SIGINT and SIGTERM go to CMD first, and
/// the recording ends when it exits. 0 when there is none.
pub static CHILD: AtomicI32 = AtomicI32::new(0);

/// Why CMD cannot run: the message and the exit status a shell gives (127, 126).
#[derive(Debug)]
pub struct NotRunnable {
    pub status: u8,
    pub message: String,
}

/// Finds CMD as `execvp` would: a name with a `/` as it is, otherwise in `PATH`.
pub fn resolve(cmd: &OsStr) -> Result<PathBuf, NotRunnable> {
    let name = cmd.to_string_lossy();
    let not_found = || NotRunnable {
        status: 127,
        message: format!("{name}: command not found"),
    };
    let candidates: Vec<PathBuf> = if cmd.as_bytes().contains(&b'/') {
        vec![PathBuf::from(cmd)]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path).map(|d| d.join(cmd)).collect()
    };
    let mut not_executable = None;
    for c in candidates {
        let Ok(meta) = std::fs::metadata(&c) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(c);
        }
        not_executable.get_or_insert(c);
    }
    match not_executable {
        Some(c) => Err(NotRunnable {
            status: 126,
            message: format!("{}: not an executable file", c.display()),
        }),
        None => Err(not_found()),
    }
}

/// The user CMD runs as: the one who ran sudo, unless `as_root` or not under sudo as root.
pub fn target_user(as_root: bool) -> Option<(libc::uid_t, libc::gid_t)> {
    // SAFETY: geteuid has no preconditions.
    if as_root || unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |name: &str| std::env::var(name).ok()?.parse::<u32>().ok();
    let (uid, gid) = (id("SUDO_UID")?, id("SUDO_GID")?);
    (uid != 0).then_some((uid, gid))
}

/// CMD could not exec once released (it changed since it was found, or is not a program):
/// the exit status a shell gives (127 when gone, 126 otherwise) and why.
#[derive(Debug)]
pub struct ExecFailed {
    pub status: u8,
    pub message: String,
}

impl std::fmt::Display for ExecFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExecFailed {}

/// CMD, forked and waiting for [`Launch::release`] before its exec.
#[derive(Debug)]
pub struct Launch {
    pub pid: i32,
    /// Written once to let the child exec; closed unwritten, the child exits.
    gate: Option<OwnedFd>,
    /// Closed by a successful exec (close-on-exec); carries the errno of a failed one.
    exec_error: OwnedFd,
    /// The raw wait status, once reaped.
    status: Option<i32>,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: a valid two-element array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Launch {
    /// Forks CMD (`program`, found by [`resolve`], with `args` as its argv) held before its
    /// exec. Call before the recorder starts any thread.
    pub fn spawn(
        program: &Path,
        args: &[OsString],
        user: Option<(libc::uid_t, libc::gid_t)>,
    ) -> anyhow::Result<Launch> {
        let to_c = |s: &OsStr| {
            CString::new(s.as_bytes())
                .map_err(|_| anyhow::anyhow!("{}: a NUL byte in the command", s.to_string_lossy()))
        };
        // Everything the child needs is made before the fork: after it, only calls that are
        // safe in a forked copy of a process (read, set*id, execv, write, _exit).
        let path = to_c(program.as_os_str())?;
        let argv: Vec<CString> = args.iter().map(|a| to_c(a)).collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let (gate_r, gate_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        // SAFETY: fork; the child only makes async-signal-safe calls before execv or _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            anyhow::bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: the child of the fork: raw system calls on descriptors it holds and
            // pointers made before the fork, then execv or _exit.
            unsafe {
                // Only the recorder holds the gate's write end: closed unwritten, read sees
                // the end of the pipe and the child exits.
                libc::close(gate_w.as_raw_fd());
                let mut byte = 0u8;
                let n = libc::read(gate_r.as_raw_fd(), (&raw mut byte).cast(), 1);
                if n != 1 {
                    libc::_exit(127);
                }
                let mut errno = 0;
                if let Some((uid, gid)) = user
                    && (libc::setgroups(1, &gid) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0)
                {
                    errno = *libc::__errno_location();
                }
                if errno == 0 {
                    libc::execv(path.as_ptr(), argv_ptrs.as_ptr());
                    errno = *libc::__errno_location();
                }
                let bytes = errno.to_ne_bytes();
                libc::write(err_w.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                libc::_exit(127);
            }
        }
        drop((gate_r, err_w));
        CHILD.store(pid, Ordering::SeqCst);
        Ok(Launch {
            pid,
            gate: Some(gate_w),
            exec_error: err_r,
            status: None,
        })
    }

    /// Lets CMD exec; returns once it has (or why it could not).
    pub fn release(&mut self) -> Result<(), ExecFailed> {
        let gate = self.gate.take().expect("released once");
        let byte = [1u8];
        // SAFETY: a one-byte write from a valid buffer to a pipe we own.
        let n = unsafe { libc::write(gate.as_raw_fd(), byte.as_ptr().cast(), 1) };
        if n != 1 {
            return Err(ExecFailed {
                status: 126,
                message: format!("starting the command: {}", std::io::Error::last_os_error()),
            });
        }
        let mut errno = [0u8; 4];
        // SAFETY: reading into a valid 4-byte buffer from a pipe we own; 0 bytes means the
        // exec succeeded (the child's end closed on exec).
        let n = unsafe { libc::read(self.exec_error.as_raw_fd(), errno.as_mut_ptr().cast(), 4) };
        if n == 4 {
            let errno = i32::from_ne_bytes(errno);
            let e = std::io::Error::from_raw_os_error(errno);
            return Err(ExecFailed {
                status: if errno == libc::ENOENT { 127 } else { 126 },
                message: format!("the command could not start: {e}"),
            });
        }
        Ok(())
    }

    /// The wait status once CMD has exited (without waiting for it).
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.status.is_none() {
            let mut status = 0;
            // SAFETY: waitpid of our own child with a valid out-pointer.
            if unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) } == self.pid {
                self.status = Some(status);
                CHILD.store(0, Ordering::SeqCst);
            }
        }
        self.status
    }

    /// Waits for CMD to exit and returns the exit status a shell would give: its code, or
    /// 128 + the signal that ended it.
    pub fn wait(&mut self) -> u8 {
        let status = match self.try_wait() {
            Some(s) => s,
            None => {
                let mut status = 0;
                // SAFETY: waitpid of our own child with a valid out-pointer.
                unsafe { libc::waitpid(self.pid, &mut status, 0) };
                CHILD.store(0, Ordering::SeqCst);
                self.status = Some(status);
                status
            }
        };
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status) as u8
        } else if libc::WIFSIGNALED(status) {
            128u8.wrapping_add(libc::WTERMSIG(status) as u8)
        } else {
            1
        }
    }
}

impl Drop for Launch {
    /// A command never released (setup failed) is ended, not left waiting.
    fn drop(&mut self) {
        if self.gate.take().is_some() {
            // SAFETY: our own child, held before its exec; closing the gate made it exit too.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_commands_as_a_shell_does() {
        assert!(resolve(OsStr::new("sh")).unwrap().is_absolute());
        let missing = resolve(OsStr::new("no-such-command-perfpack")).unwrap_err();
        assert_eq!(missing.status, 127, "{}", missing.message);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let not_exec = resolve(plain.as_os_str()).unwrap_err();
        assert_eq!(not_exec.status, 126, "{}", not_exec.message);
        assert_eq!(resolve(dir.path().as_os_str()).unwrap_err().status, 126);
    }
}
