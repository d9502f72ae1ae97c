//! The live status line: one updating line on a terminal, nothing of it in a log.

use std::io::Read as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::{Command, Stdio};

use super::{RECORDER, WORKLOAD, record, require_recording};

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

/// (elapsed s, samples) of one status line: `   1.5 s  samples 1234  events …`.
fn parse_status(line: &str) -> Option<(f64, u64)> {
    let (secs, rest) = line.trim_start().split_once(" s  samples ")?;
    let samples = rest.split_whitespace().next()?.parse().ok()?;
    Some((secs.trim().parse().ok()?, samples))
}

#[test]
fn the_status_line_updates_on_a_terminal_and_stays_out_of_logs() {
    let _live = require_recording!();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("tty.ppk");
    let (master, slave) = openpty();
    // The recorder's stderr on a terminal, recording a workload that spins for 2 s.
    let mut child = {
        let mut cmd = Command::new(RECORDER);
        cmd.args(["-o", bundle.to_str().unwrap(), "--", WORKLOAD, "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(slave));
        cmd.spawn().unwrap()
        // `cmd`, and with it our copy of the terminal's slave side, is dropped here: the
        // master reads the end of input once the recorder exits.
    };
    let mut term = std::fs::File::from(master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match term.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            // Linux reports a closed slave side as EIO.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => panic!("reading the terminal: {e}"),
        }
    }
    let status = child.wait().unwrap();
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(status.success(), "{status}: {text}");
    // Each update rewrites the line: carriage return, then erase to its end.
    let updates: Vec<(f64, u64)> = text.split("\r\x1b[K").filter_map(parse_status).collect();
    assert!(
        updates.len() >= 2,
        "fewer than two status updates in 2 s (one every 0.5 s): {text:?}"
    );
    for w in updates.windows(2) {
        assert!(w[1].0 > w[0].0 && w[1].1 >= w[0].1, "{w:?} in {text:?}");
    }
    assert!(
        text.contains("events ") && text.contains("written ") && text.contains("recorder CPU "),
        "{text:?}"
    );
    // The line counts what the bundle keeps: never more samples than it holds.
    let kept = super::samples(&bundle).len() as u64;
    let last = updates.last().unwrap().1;
    assert!(
        last <= kept,
        "the line said {last} samples, the bundle has {kept}"
    );
    // Then the line is cleared and the summary follows.
    let after = text.rsplit("\r\x1b[K").next().unwrap();
    assert!(parse_status(after).is_none(), "{after:?}");

    // Without a terminal (a log, a pipe): no status line, no control characters.
    let bundle = dir.path().join("log.ppk");
    let out = record(&["-o", bundle.to_str().unwrap(), "--", WORKLOAD, "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
    assert!(
        !stderr.lines().any(|l| parse_status(l).is_some()),
        "{stderr}"
    );
}
