//! The perf.data header checked against the file before the reader sees it, and the reader
//! run so that a panic inside it is an error.

use std::io::{Read, Seek};

/// The size of `perf_file_header`: magic, its own size, the attr size, the attrs, data and
/// event-types sections, and the 256-bit feature bitmap.
const HEADER_SIZE: u64 = 104;

/// Checks the file's header against its length before the reader sees it: the reader sizes
/// buffers from these fields and divides by the attr size, so a hostile or cut header must
/// not reach it.
pub fn check_header(file: &mut std::fs::File) -> anyhow::Result<()> {
    use std::io::SeekFrom;
    let len = file.metadata()?.len();
    let mut h = [0u8; HEADER_SIZE as usize];
    let got = file.read(&mut h)?;
    let le = match h.get(..8) {
        Some(b"PERFILE2") => true,
        Some(b"2ELIFREP") => false,
        _ => anyhow::bail!("not a perf.data file (no PERFILE2 magic)"),
    };
    let word = |i: usize| -> u64 {
        let b: [u8; 8] = h[i * 8..i * 8 + 8].try_into().unwrap_or_default();
        if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    };
    if got >= 16 && word(1) == 16 {
        anyhow::bail!(
            "a pipe-mode capture (perf record -o -): write it to a file with `perf inject -i FILE -o perf.data` and import that"
        );
    }
    if (got as u64) < HEADER_SIZE {
        anyhow::bail!("not a perf.data file: {got} bytes, shorter than its header");
    }
    let within = |offset: u64, size: u64| offset.checked_add(size).is_some_and(|end| end <= len);
    let (header_size, attr_size) = (word(1), word(2));
    let (attrs, attrs_size) = (word(3), word(4));
    let (data, data_size) = (word(5), word(6));
    if header_size < HEADER_SIZE || header_size > len {
        anyhow::bail!("not a perf.data file: header size {header_size}");
    }
    if !(64..=4096).contains(&attr_size) {
        anyhow::bail!("damaged perf.data header: event attributes of {attr_size} bytes");
    }
    if attrs_size % attr_size != 0 {
        anyhow::bail!(
            "damaged perf.data header: {attrs_size} bytes of event attributes are not a whole number of {attr_size}-byte attributes"
        );
    }
    if !within(attrs, attrs_size) || attrs_size / attr_size > 1 << 16 {
        anyhow::bail!("damaged perf.data header: the event attributes lie outside the file");
    }
    if !within(data, data_size) {
        anyhow::bail!(
            "the data section ends at byte {} of a {len}-byte file: the capture was cut (perf record did not finish?)",
            data.saturating_add(data_size)
        );
    }
    // One (offset, size) entry per feature bit, right after the data.
    let features = (9..13).map(|i| word(i).count_ones() as u64).sum::<u64>();
    let table = data + data_size;
    if !within(table, features * 16) {
        anyhow::bail!("damaged perf.data header: the feature table lies outside the file");
    }
    file.seek(SeekFrom::Start(table))?;
    let mut entries = vec![0u8; (features * 16) as usize];
    file.read_exact(&mut entries)?;
    for e in entries.chunks_exact(16) {
        let get = |b: &[u8]| {
            let b: [u8; 8] = b.try_into().unwrap_or_default();
            if le {
                u64::from_le_bytes(b)
            } else {
                u64::from_be_bytes(b)
            }
        };
        if !within(get(&e[..8]), get(&e[8..])) {
            anyhow::bail!(
                "damaged perf.data header: a feature section lies outside the file (cut short?)"
            );
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// Runs the perf.data reader, turning a panic inside it into an error (the crate trusts some
/// sizes [`check_header`] cannot reach) without its message on stderr.
pub fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(anyhow::anyhow!(
            "damaged perf.data the reader could not parse ({why})"
        ))
    })
}
