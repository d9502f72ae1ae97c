//! Decodes perf ring-buffer records (for the attribute layout `perf.rs` opens: sample_type
//! IP|TID|TIME|ID|STREAM_ID|CPU|PERIOD|CALLCHAIN, RAW for `--stack-event` events (which have no
//! PERIOD), then REGS_USER|STACK_USER when unwinding on the box, CGROUP where the kernel has it;
//! sample_id_all with TID|TIME|STREAM_ID|CPU).

use crate::sys;

/// Set in the ring number a record comes with (the CPU in the low bits) when it comes from a
/// CPU's switch-out ring.
pub const SWITCH_RING: u32 = 1 << 31;
/// Set in the ring number a record comes with when it comes from a CPU's side-band ring.
pub const SIDE_RING: u32 = 1 << 30;
/// Set in the ring number a record comes with when it comes from a CPU's ring of
/// `--stack-event` samples; the event's number is then in the bits from [`EVENT_SHIFT`] up.
pub const EVENT_RING: u32 = 1 << 29;
/// Where a `--stack-event` ring's number keeps its event's number (the CPU below it).
pub const EVENT_SHIFT: u32 = 16;
/// How many `--stack-event` events ring numbers can tell apart.
pub const MAX_EVENTS: usize = 1 << (29 - EVENT_SHIFT);

/// The ring number of `--stack-event` number `event`'s ring on `cpu`.
pub fn event_ring(cpu: u32, event: usize) -> u32 {
    debug_assert!(event < MAX_EVENTS && cpu < 1 << EVENT_SHIFT);
    cpu | EVENT_RING | ((event as u32) << EVENT_SHIFT)
}

/// The CPU and, for a `--stack-event` ring, the event's number, of a ring number.
pub fn ring_of(n: u32) -> (u32, Option<usize>) {
    let cpu = n & ((1 << EVENT_SHIFT) - 1);
    let event = (n & EVENT_RING != 0).then_some(((n & (EVENT_RING - 1)) >> EVENT_SHIFT) as usize);
    (cpu, event)
}

/// What a sample record holds after its callchain: the same for every event of a recording,
/// since the events share their CPU's ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// `PERF_SAMPLE_REGS_USER` with [`sys::REGS_USER_X86_64`] (BP, SP, IP).
    pub regs_user: bool,
    /// `PERF_SAMPLE_STACK_USER`.
    pub stack_user: bool,
    /// No `PERF_SAMPLE_PERIOD` (the `--stack-event` events: asked for it, the kernel samples
    /// every software event and tracepoint hit whatever the period); `period` is then 0.
    pub no_period: bool,
    /// `PERF_SAMPLE_CGROUP`: the task's cgroup id after the user stack.
    pub cgroup: bool,
    /// `PERF_SAMPLE_RAW` (the `--stack-event` events): a tracepoint's record after the
    /// callchain (a software event's is 4 zero bytes).
    pub raw: bool,
}

/// The user registers of a sample, as the unwinder needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRegs {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// A sample record's fields.
#[derive(Debug, PartialEq, Eq)]
pub struct Sample<'a> {
    pub pid: i32,
    pub tid: i32,
    pub time: u64,
    /// The id of the event the recorder opened (the parent's for an inherited event).
    pub id: u64,
    /// The id of the event that took the sample (an inherited event has its own).
    pub stream_id: u64,
    pub cpu: u32,
    pub period: u64,
    /// CPU mode of the sample (`sys::MISC_KERNEL` when in the kernel).
    pub kernel: bool,
    /// User registers at the sample (or at the kernel entry); `None` for kernel threads and
    /// when not sampled.
    pub regs: Option<UserRegs>,
    /// The copy of the user stack from `regs.sp` up, as long as the kernel could take it.
    pub stack: &'a [u8],
    /// The task's cgroup (v2) id, when sampled.
    pub cgroup: Option<u64>,
    /// A tracepoint's record (common fields first, as its `format` file lays it out, padded
    /// to 8 bytes), when sampled.
    pub raw: &'a [u8],
}

/// One decoded record. Callchains are decoded into a caller-provided buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Sample(Sample<'a>),
    Mmap {
        pid: i32,
        addr: u64,
        len: u64,
        pgoff: u64,
        exec: bool,
        filename: &'a str,
        time: u64,
    },
    Comm {
        pid: i32,
        tid: i32,
        comm: &'a str,
        exec: bool,
        time: u64,
    },
    Fork {
        pid: i32,
        ppid: i32,
        tid: i32,
        time: u64,
    },
    Exit {
        pid: i32,
        tid: i32,
        time: u64,
    },
    Lost {
        count: u64,
    },
    Other,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> Option<u32> {
        let v = self.b.get(self.at..self.at + 4)?;
        self.at += 4;
        Some(u32::from_ne_bytes(v.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        let v = self.b.get(self.at..self.at + 8)?;
        self.at += 8;
        Some(u64::from_ne_bytes(v.try_into().ok()?))
    }
    /// A NUL-padded string up to the 8-byte boundary that holds its NUL.
    fn cstr(&mut self) -> Option<&'a str> {
        let rest = self.b.get(self.at..)?;
        let nul = rest.iter().position(|&c| c == 0)?;
        self.at += (nul + 8) & !7;
        std::str::from_utf8(&rest[..nul]).ok()
    }
    /// The `sample_id` trailer's time (TID then TIME).
    fn trailer_time(&mut self) -> u64 {
        let _ = self.u64();
        self.u64().unwrap_or(0)
    }
}

/// Decodes one record (header included); for samples, the callchain goes into `chain`.
pub fn decode<'a>(rec: &'a [u8], chain: &mut Vec<u64>, layout: Layout) -> Record<'a> {
    if rec.len() < 8 {
        return Record::Other;
    }
    let kind = u32::from_ne_bytes(rec[0..4].try_into().expect("4 bytes"));
    let misc = u16::from_ne_bytes([rec[4], rec[5]]);
    let mut c = Cursor { b: rec, at: 8 };
    decode_body(kind, misc, &mut c, chain, layout).unwrap_or(Record::Other)
}

/// The time of a record: a sample's own, or the `sample_id` trailer's (0 when it has none).
/// A sample's time is at a fixed place (after the header, ip and pid/tid) whatever its layout,
/// so it is read there: decoded with the wrong layout (a `--stack-event` sample has no period),
/// the sample would not decode and would sort before everything.
pub fn time(rec: &[u8], chain: &mut Vec<u64>) -> u64 {
    if rec.get(..4) == Some(&sys::RECORD_SAMPLE.to_ne_bytes()[..])
        && let Some(t) = rec.get(24..32)
    {
        return u64::from_ne_bytes(t.try_into().expect("8 bytes"));
    }
    match decode(rec, chain, Layout::default()) {
        Record::Sample(Sample { time, .. })
        | Record::Mmap { time, .. }
        | Record::Comm { time, .. }
        | Record::Fork { time, .. }
        | Record::Exit { time, .. } => time,
        Record::Lost { .. } | Record::Other => 0,
    }
}

fn decode_body<'a>(
    kind: u32,
    misc: u16,
    c: &mut Cursor<'a>,
    chain: &mut Vec<u64>,
    layout: Layout,
) -> Option<Record<'a>> {
    Some(match kind {
        sys::RECORD_SAMPLE => {
            let _ip = c.u64()?;
            let pid = c.u32()? as i32;
            let tid = c.u32()? as i32;
            let time = c.u64()?;
            let id = c.u64()?;
            let stream_id = c.u64()?;
            let cpu = c.u32()?;
            let _res = c.u32()?;
            let period = if layout.no_period { 0 } else { c.u64()? };
            let nr = c.u64()? as usize;
            chain.clear();
            if nr > 4096 {
                return None;
            }
            for _ in 0..nr {
                chain.push(c.u64()?);
            }
            let mut raw: &[u8] = &[];
            if layout.raw {
                // The size counts the padding that ends the record on an 8-byte boundary.
                let size = c.u32()? as usize;
                raw = c.b.get(c.at..c.at.checked_add(size)?)?;
                c.at += size;
            }
            let mut regs = None;
            if layout.regs_user {
                // abi: 0 (PERF_SAMPLE_REGS_ABI_NONE, a kernel thread) means no registers follow.
                if c.u64()? != 0 {
                    let (bp, sp, ip) = (c.u64()?, c.u64()?, c.u64()?);
                    regs = Some(UserRegs { ip, sp, bp });
                }
            }
            let mut stack: &[u8] = &[];
            if layout.stack_user {
                let size = c.u64()? as usize;
                if size > 0 {
                    let data = c.b.get(c.at..c.at.checked_add(size)?)?;
                    c.at += size;
                    // dyn_size: how much of the copy the kernel could fill.
                    let dyn_size = (c.u64()? as usize).min(size);
                    stack = &data[..dyn_size];
                }
            }
            let cgroup = if layout.cgroup { Some(c.u64()?) } else { None };
            Record::Sample(Sample {
                pid,
                tid,
                time,
                id,
                stream_id,
                cpu,
                period,
                kernel: misc & sys::MISC_CPUMODE_MASK == sys::MISC_KERNEL,
                regs,
                stack,
                cgroup,
                raw,
            })
        }
        sys::RECORD_MMAP2 => {
            let pid = c.u32()? as i32;
            let _tid = c.u32()?;
            let addr = c.u64()?;
            let len = c.u64()?;
            let pgoff = c.u64()?;
            // maj, min, ino, ino_generation (or the build id form): 24 bytes.
            c.at += 24;
            let prot = c.u32()?;
            let _flags = c.u32()?;
            let filename = c.cstr()?;
            Record::Mmap {
                pid,
                addr,
                len,
                pgoff,
                exec: prot & libc::PROT_EXEC as u32 != 0,
                filename,
                time: c.trailer_time(),
            }
        }
        sys::RECORD_MMAP => {
            let pid = c.u32()? as i32;
            let _tid = c.u32()?;
            let addr = c.u64()?;
            let len = c.u64()?;
            let pgoff = c.u64()?;
            let filename = c.cstr()?;
            Record::Mmap {
                pid,
                addr,
                len,
                pgoff,
                // MMAP records (without mmap_data) are only emitted for executable mappings.
                exec: true,
                filename,
                time: c.trailer_time(),
            }
        }
        sys::RECORD_COMM => {
            let pid = c.u32()? as i32;
            let tid = c.u32()? as i32;
            let comm = c.cstr()?;
            Record::Comm {
                pid,
                tid,
                comm,
                exec: misc & sys::MISC_COMM_EXEC != 0,
                time: c.trailer_time(),
            }
        }
        sys::RECORD_FORK | sys::RECORD_EXIT => {
            let pid = c.u32()? as i32;
            let ppid = c.u32()? as i32;
            let tid = c.u32()? as i32;
            let _ptid = c.u32()?;
            let time = c.u64()?;
            if kind == sys::RECORD_FORK {
                Record::Fork {
                    pid,
                    ppid,
                    tid,
                    time,
                }
            } else {
                Record::Exit { pid, tid, time }
            }
        }
        sys::RECORD_LOST => {
            let _id = c.u64()?;
            Record::Lost { count: c.u64()? }
        }
        sys::RECORD_LOST_SAMPLES => Record::Lost { count: c.u64()? },
        _ => Record::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, misc: u16, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&kind.to_ne_bytes());
        r.extend_from_slice(&misc.to_ne_bytes());
        r.extend_from_slice(&((body.len() + 8) as u16).to_ne_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn decodes_a_sample_with_its_callchain() {
        let mut body = Vec::new();
        body.extend_from_slice(&0xffff_ffff_8100_1234u64.to_ne_bytes());
        body.extend_from_slice(&42u32.to_ne_bytes());
        body.extend_from_slice(&43u32.to_ne_bytes());
        body.extend_from_slice(&1_000u64.to_ne_bytes());
        body.extend_from_slice(&76u64.to_ne_bytes());
        body.extend_from_slice(&77u64.to_ne_bytes());
        body.extend_from_slice(&1u32.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend_from_slice(&10_101u64.to_ne_bytes());
        let chain = [
            sys::CONTEXT_KERNEL,
            0xffff_ffff_8100_1234,
            sys::CONTEXT_USER,
            0x5555_0000_1000,
        ];
        body.extend_from_slice(&(chain.len() as u64).to_ne_bytes());
        for v in chain {
            body.extend_from_slice(&v.to_ne_bytes());
        }
        let rec = record(sys::RECORD_SAMPLE, sys::MISC_KERNEL, &body);
        let mut out = Vec::new();
        assert_eq!(
            decode(&rec, &mut out, Layout::default()),
            Record::Sample(Sample {
                pid: 42,
                tid: 43,
                time: 1000,
                id: 76,
                stream_id: 77,
                cpu: 1,
                period: 10_101,
                kernel: true,
                regs: None,
                stack: &[],
                cgroup: None,
                raw: &[],
            })
        );
        assert_eq!(out, chain);

        // A `--stack-event` sample has no period: the callchain follows the cpu field. Its time
        // is read as any sample's.
        let mut short = body[..48].to_vec();
        short.extend_from_slice(&body[56..]);
        assert_eq!(
            time(
                &record(sys::RECORD_SAMPLE, sys::MISC_KERNEL, &short),
                &mut out
            ),
            1000
        );
        let no_period = Layout {
            no_period: true,
            ..Layout::default()
        };
        let Record::Sample(Sample { period, .. }) = decode(
            &record(sys::RECORD_SAMPLE, sys::MISC_KERNEL, &short),
            &mut out,
            no_period,
        ) else {
            panic!("not a sample");
        };
        assert_eq!((period, &out[..]), (0, &chain[..]));

        // The same sample with a tracepoint's record (12 bytes, its size counting them: 4 + 12
        // ends on 8 bytes), user registers and a 24-byte stack copy of which 16 were filled.
        body.extend_from_slice(&12u32.to_ne_bytes());
        body.extend_from_slice(&[9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0]);
        body.extend_from_slice(&2u64.to_ne_bytes()); // PERF_SAMPLE_REGS_ABI_64
        for r in [0x7ffc_0000_0100u64, 0x7ffc_0000_0000, 0x5555_0000_1000] {
            body.extend_from_slice(&r.to_ne_bytes());
        }
        body.extend_from_slice(&24u64.to_ne_bytes());
        body.extend_from_slice(&[7u8; 24]);
        body.extend_from_slice(&16u64.to_ne_bytes());
        // PERF_SAMPLE_CGROUP: the cgroup id after the stack copy.
        body.extend_from_slice(&4242u64.to_ne_bytes());
        let rec = record(sys::RECORD_SAMPLE, 0, &body);
        let layout = Layout {
            regs_user: true,
            stack_user: true,
            no_period: false,
            cgroup: true,
            raw: true,
        };
        let Record::Sample(Sample {
            regs,
            stack,
            cgroup,
            raw,
            ..
        }) = decode(&rec, &mut out, layout)
        else {
            panic!("not a sample");
        };
        assert_eq!(cgroup, Some(4242));
        assert_eq!(raw, &[9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0]);
        assert_eq!(
            regs,
            Some(UserRegs {
                ip: 0x5555_0000_1000,
                sp: 0x7ffc_0000_0000,
                bp: 0x7ffc_0000_0100
            })
        );
        assert_eq!(stack, &[7u8; 16]);
        assert_eq!(time(&rec, &mut out), 1000);
        // A stack size past the record is refused, not read.
        let cut = &rec[..rec.len() - 20];
        assert_eq!(decode(cut, &mut out, layout), Record::Other);
    }

    #[test]
    fn decodes_comm_exec_and_rejects_truncated_records() {
        let mut body = Vec::new();
        body.extend_from_slice(&7u32.to_ne_bytes());
        body.extend_from_slice(&8u32.to_ne_bytes());
        body.extend_from_slice(b"bash\0\0\0\0");
        body.extend_from_slice(&8u64.to_ne_bytes()); // trailer pid/tid
        body.extend_from_slice(&99u64.to_ne_bytes()); // trailer time
        let rec = record(sys::RECORD_COMM, sys::MISC_COMM_EXEC, &body);
        let mut chain = Vec::new();
        assert_eq!(
            decode(&rec, &mut chain, Layout::default()),
            Record::Comm {
                pid: 7,
                tid: 8,
                comm: "bash",
                exec: true,
                time: 99
            }
        );
        assert_eq!(
            decode(&rec[..12], &mut chain, Layout::default()),
            Record::Other
        );
    }
}
