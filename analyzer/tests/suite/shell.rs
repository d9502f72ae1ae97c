//! The interactive shell of `perfpack sql B` on a pseudo-terminal: prompts, a statement over
//! two lines, dot commands, an error that does not end the session, `.quit`.

use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::fixture;

/// A pty pair: (master, slave).
fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the out-pointers; the other arguments
    // may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Reads from the terminal until `needle` has appeared `count` times in all output so far.
fn read_until(master: &mut std::fs::File, seen: &mut String, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while seen.matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} after 60 s in:\n{seen}"
        );
        match master.read(&mut buf) {
            Ok(0) => panic!("terminal closed before {needle:?}:\n{seen}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) => panic!("reading the terminal: {e}\n{seen}"),
        }
    }
}

#[test]
fn shell_runs_statements_and_dot_commands_on_a_terminal() {
    let (master, slave) = openpty();
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfpack"))
        .args(["sql".as_ref(), fixture("basic").as_os_str()])
        .env("HOME", home.path())
        .env("TERM", "dumb")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut term = std::fs::File::from(master);
    let mut seen = String::new();
    let mut prompts = 1;
    read_until(&mut term, &mut seen, "perfpack> ", prompts);
    for (line, expect) in [
        (".tables\n", "use_checklist"),
        ("SELECT 41 + 1\n", "->"),
        ("  AS answer;\n", "| 42"),
        (".schema pmc\n", "time_running_ns"),
        ("SELECT nope;\n", "error: "),
    ] {
        term.write_all(line.as_bytes()).unwrap();
        read_until(&mut term, &mut seen, expect, 1);
        if !line.starts_with("SELECT 41") {
            prompts += 1;
            read_until(&mut term, &mut seen, "perfpack> ", prompts);
        }
    }
    term.write_all(b".quit\n").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}\n{seen}");
    // History is kept for the next session.
    let history = std::fs::read_to_string(home.path().join(".perfpack_history")).unwrap();
    assert!(history.contains("SELECT nope;"), "{history}");
}
