//! Entry points of the recorder's fuzz targets under `fuzz/` (kernel data the recorder parses:
//! ring-buffer pages and event format files; mapped files, registers and stack copies it
//! unwinds), shared with the tests that replay the committed
//! inputs on stable Rust. They decode exactly as a capture does, down to Arrow batches.

use std::sync::OnceLock;

use crate::ftrace::decode::{self, Event, Names, Rows};
use crate::ftrace::{format, page, spill};

/// The formats of the committed real-kernel fixtures, by event id.
fn fixture_events() -> &'static [Event] {
    static EVENTS: OnceLock<Vec<Event>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        [
            (
                "sched",
                include_str!("../tests/data/ftrace/sched_switch.format"),
            ),
            (
                "sched",
                include_str!("../tests/data/ftrace/sched_wakeup.format"),
            ),
            (
                "raw_syscalls",
                include_str!("../tests/data/ftrace/sys_enter.format"),
            ),
            (
                "ftrace",
                include_str!("../tests/data/ftrace/function.format"),
            ),
            (
                "ftrace",
                include_str!("../tests/data/ftrace/funcgraph_entry.format"),
            ),
            (
                "ftrace",
                include_str!("../tests/data/ftrace/funcgraph_exit.format"),
            ),
        ]
        .into_iter()
        .map(|(system, text)| Event::new(format::parse(system, text).expect("fixture format")))
        .collect()
    })
}

/// Decodes `payload` as `ev` into `rows`, then turns the rows into batches.
fn decode_all<'a>(events: impl IntoIterator<Item = (&'a Event, u64, &'a [u8])>) {
    let mut names = Names::default();
    let mut rows = Rows::default();
    for (ev, ts, payload) in events {
        decode::decode(ev, ts as i64, 0, payload, &mut names, &mut rows);
    }
    let (mut batches, mut bytes) = (Vec::new(), 0);
    spill(&mut rows, &mut batches, &mut bytes);
}

/// One page of `trace_pipe_raw`, walked and every event decoded with the fixture formats.
pub fn ftrace_page(data: &[u8]) {
    let events = fixture_events();
    let mut found = Vec::new();
    let _ = page::walk(data, 16, |ts, payload| {
        let id = u16::from_ne_bytes([payload[0], payload[1]]);
        if let Some(ev) = events.iter().find(|e| e.format.id == id) {
            found.push((ev, ts, payload));
        }
    });
    decode_all(found);
}

/// A format file and an event record: `SYSTEM\nFORMAT-TEXT\0PAYLOAD`. What parses is decoded
/// from the payload as the recorder would decode that event.
pub fn ftrace_format(data: &[u8]) {
    let (text, payload) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let (system, text) = text.split_once('\n').unwrap_or(("", &text));
    let Ok(fmt) = format::parse(system, text) else {
        return;
    };
    let ev = Event::new(fmt);
    decode_all([(&ev, 1, payload)]);
}

/// A user stack to unwind: `ELF-LEN (u32 LE) ELF-BYTES IP SP BP (u64 LE each) STACK-COPY`. The
/// file is mapped at 0x40_0000 from offset 0 and walked with `--unwind auto` and `dwarf`.
pub fn unwind(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (elf, rest) = rest.split_at(len);
    let word = |i: usize| {
        rest.get(i * 8..i * 8 + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let regs = crate::records::UserRegs {
        ip: word(0),
        sp: word(1),
        bp: word(2),
    };
    let stack = rest.get(24..).unwrap_or_default();
    for mode in [crate::unwind::Unwind::Auto, crate::unwind::Unwind::Dwarf] {
        let mut out = Vec::new();
        let walk =
            crate::unwind::Unwinder::new(mode).walk_bytes(elf.to_vec(), regs, stack, &mut out);
        assert!(out.len() <= crate::unwind::MAX_FRAMES, "{walk:?}");
    }
}

#[cfg(test)]
mod tests {
    use perfpack_schema::harness::replay_committed;

    #[test]
    fn committed_unwind_inputs_pass() {
        replay_committed("unwind", super::unwind);
    }

    #[test]
    fn committed_ftrace_page_inputs_pass() {
        replay_committed("ftrace_page", super::ftrace_page);
    }

    #[test]
    fn committed_ftrace_format_inputs_pass() {
        replay_committed("ftrace_format", super::ftrace_format);
    }
}
