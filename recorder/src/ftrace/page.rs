//! Walks one page of the ftrace ring buffer as `per_cpu/cpuN/trace_pipe_raw` returns it: the
//! page header (timestamp, commit with the missed-events flags), then compressed event headers
//! (type_len:5, time_delta:27) with data, padding, time extends and absolute time stamps
//! (kernel/trace/ring_buffer.c; trace-cmd's kbuffer reads the same layout).

const TYPE_PADDING: u32 = 29;
const TYPE_TIME_EXTEND: u32 = 30;
const TYPE_TIME_STAMP: u32 = 31;
const MISSED_EVENTS: u64 = 1 << 31;
const MISSED_STORED: u64 = 1 << 30;
/// The commit word is a signed `local_t`: with the missed bit set it reads sign-extended, so
/// the size is the bits below the flags.
const COMMIT_SIZE_MASK: u64 = (1 << 30) - 1;
/// Top bits of an absolute time stamp that only the page header carries.
const TS_MSB: u64 = 0xf8 << 56;

/// What a page says about itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// Events were lost (overwritten or dropped) before this page.
    pub missed: bool,
    /// How many, when the kernel stored the count.
    pub missed_count: Option<u64>,
    /// Bytes of event data on the page.
    pub data_len: usize,
    pub events: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Bytes of the fields every event starts with (`common_type`, flags, preempt count, pid).
const COMMON_FIELDS: usize = 8;

/// Calls `f(timestamp, payload)` for each event of `page` (payload starts with `common_type`,
/// and holds at least the common fields). `data_offset` is where event data starts (16 on
/// 64-bit kernels, from `header_page`).
pub fn walk<'a>(
    page: &'a [u8],
    data_offset: usize,
    mut f: impl FnMut(u64, &'a [u8]),
) -> Result<PageInfo, String> {
    let ts0 = u64_at(page, 0).ok_or("page shorter than its header")?;
    let commit = u64_at(page, 8).ok_or("page shorter than its header")?;
    let len = (commit & COMMIT_SIZE_MASK) as usize;
    let data = page
        .get(data_offset..data_offset + len)
        .ok_or_else(|| format!("commit size {len} larger than the page"))?;
    let mut info = PageInfo {
        missed: commit & MISSED_EVENTS != 0,
        data_len: len,
        ..PageInfo::default()
    };
    if commit & MISSED_STORED != 0 {
        info.missed_count = u64_at(page, data_offset + len);
    }
    // Time arithmetic wraps as the kernel's does: a corrupt page gives nonsense times, never a
    // panic.
    let mut ts = ts0;
    let mut pos = 0;
    while pos + 4 <= len {
        let header = u32_at(data, pos).expect("bounds checked");
        let type_len = header & 0x1f;
        let delta = u64::from(header >> 5);
        match type_len {
            TYPE_PADDING => {
                if delta == 0 {
                    break; // the rest of the page is empty
                }
                let skip = u32_at(data, pos + 4).ok_or("truncated padding")? as usize;
                pos += 4 + skip;
            }
            TYPE_TIME_EXTEND => {
                let hi = u64::from(u32_at(data, pos + 4).ok_or("truncated time extend")?);
                ts = ts.wrapping_add((hi << 27) | delta);
                pos += 8;
            }
            TYPE_TIME_STAMP => {
                let hi = u64::from(u32_at(data, pos + 4).ok_or("truncated time stamp")?);
                ts = (hi << 27) | delta | (ts0 & TS_MSB);
                pos += 8;
            }
            0 => {
                // Length in array[0], which counts itself.
                let n = u32_at(data, pos + 4).ok_or("truncated event length")? as usize;
                let payload = data
                    .get(pos + 8..pos + 4 + n)
                    .ok_or("event runs past the page")?;
                if payload.len() < COMMON_FIELDS {
                    return Err("event shorter than its common fields".into());
                }
                ts = ts.wrapping_add(delta);
                f(ts, payload);
                info.events += 1;
                pos += 4 + n.max(4);
            }
            n => {
                let size = n as usize * 4;
                let payload = data
                    .get(pos + 4..pos + 4 + size)
                    .ok_or("event runs past the page")?;
                if payload.len() < COMMON_FIELDS {
                    return Err("event shorter than its common fields".into());
                }
                ts = ts.wrapping_add(delta);
                f(ts, payload);
                info.events += 1;
                pos += 4 + size;
            }
        }
    }
    Ok(info)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a page: header then the given (type_len, delta, words) entries.
    pub fn page(
        ts0: u64,
        flags: u64,
        entries: &[(u32, u32, Vec<u32>)],
        missed: Option<u64>,
    ) -> Vec<u8> {
        let mut data = Vec::new();
        for (type_len, delta, words) in entries {
            data.extend_from_slice(&(type_len | (delta << 5)).to_ne_bytes());
            for w in words {
                data.extend_from_slice(&w.to_ne_bytes());
            }
        }
        let mut p = Vec::new();
        p.extend_from_slice(&ts0.to_ne_bytes());
        p.extend_from_slice(&(data.len() as u64 | flags).to_ne_bytes());
        p.extend_from_slice(&data);
        if let Some(m) = missed {
            p.extend_from_slice(&m.to_ne_bytes());
        }
        p.resize(4096, 0);
        p
    }

    #[test]
    fn walks_small_large_extended_and_absolute_events() {
        let p = page(
            1000,
            0,
            &[
                (2, 5, vec![7, 8]),             // 8 bytes at ts 1005
                (TYPE_TIME_EXTEND, 3, vec![1]), // + (1 << 27) + 3
                (0, 2, vec![12, 9, 10]),        // length 12 (counts itself): 8 bytes payload
                (TYPE_PADDING, 1, vec![8, 0]),  // discarded event: length counts itself
                (TYPE_TIME_STAMP, 50, vec![0]), // absolute 50
                (2, 1, vec![11, 0]),
                (TYPE_PADDING, 0, vec![]), // end of data
            ],
            None,
        );
        let mut seen = Vec::new();
        let info = walk(&p, 16, |ts, d| seen.push((ts, d.to_vec()))).unwrap();
        assert_eq!(info.events, 3);
        assert!(!info.missed);
        assert_eq!(seen[0].0, 1005);
        assert_eq!(seen[0].1.len(), 8);
        assert_eq!(seen[1].0, 1005 + (1 << 27) + 3 + 2);
        assert_eq!(
            seen[1].1,
            [9u32.to_ne_bytes(), 10u32.to_ne_bytes()].concat()
        );
        assert_eq!(seen[2].0, 51);
    }

    #[test]
    fn reports_missed_events_and_rejects_lying_commits() {
        let p = page(
            1,
            MISSED_EVENTS | MISSED_STORED,
            &[(2, 1, vec![0, 0])],
            Some(42),
        );
        let info = walk(&p, 16, |_, _| {}).unwrap();
        assert!(info.missed);
        assert_eq!(info.missed_count, Some(42));
        let mut bad = page(1, 0, &[], None);
        bad[8..16].copy_from_slice(&9999u64.to_ne_bytes());
        assert!(walk(&bad, 16, |_, _| {}).is_err());
        let mut truncated = page(1, 0, &[(3, 1, vec![1, 2, 3])], None);
        truncated[8..16].copy_from_slice(&8u64.to_ne_bytes());
        assert!(walk(&truncated, 16, |_, _| {}).is_err());
        // Every event has its 8 bytes of common fields (a fuzzer found a 4-byte one).
        let short = page(1, 0, &[(1, 1, vec![0])], None);
        assert!(walk(&short, 16, |_, _| {}).is_err());
    }

    #[test]
    fn real_pages_decode_with_their_formats() {
        use crate::ftrace::format;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ftrace");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let (offset, size) = format::page_data(&read("header_page")).unwrap();
        assert_eq!((offset, size), (16, 4080));
        let formats: Vec<_> = [
            ("sched", "sched_switch"),
            ("sched", "sched_wakeup"),
            ("raw_syscalls", "sys_enter"),
        ]
        .iter()
        .map(|(sys, name)| format::parse(sys, &read(&format!("{name}.format"))).unwrap())
        .collect();
        let raw = std::fs::read(dir.join("pages.raw")).unwrap();
        let mut per_event = std::collections::HashMap::new();
        let mut missed = Vec::new();
        for page in raw.chunks(4096) {
            let mut last = 0;
            let info = walk(page, offset, |ts, payload| {
                assert!(ts >= last, "time goes backwards within a page");
                last = ts;
                let id = u16::from_ne_bytes([payload[0], payload[1]]);
                let fmt = formats
                    .iter()
                    .find(|f| f.id == id)
                    .expect("every event has a format");
                *per_event.entry(fmt.name.clone()).or_insert(0) += 1;
                if fmt.name == "sched_switch" {
                    let comm =
                        crate::ftrace::decode::string(payload, fmt.field("next_comm").unwrap())
                            .unwrap();
                    assert!(!comm.is_empty() && comm.chars().all(|c| !c.is_control()));
                }
            })
            .unwrap();
            missed.push(info.missed);
        }
        // The buffer overflowed before the first read of CPU 0.
        assert_eq!(missed, [true, false, false, false]);
        assert!(per_event["sys_enter"] > 100, "{per_event:?}");
        assert!(per_event.contains_key("sched_switch"), "{per_event:?}");
    }
}
