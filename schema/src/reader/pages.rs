//! What a segment's footer and pages claim, checked before parquet 59 acts on it: the checks
//! behind [`Bundle`](super::Bundle)'s readers, each a panic, a spin or an allocation a lying
//! file caused (most found by the packed fuzz target).

use std::path::Path;
use std::sync::Arc;

use parquet::arrow::ProjectionMask;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader as _};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::serialized_reader::SerializedPageReader;

use super::SegmentData;
use crate::{Error, Result};

/// Checks what the footer says against the pages, so that a lying file is refused with an error
/// naming it rather than making parquet 59 panic or spin:
/// - every column chunk lies inside the file (parquet asserts offsets are not negative);
/// - the data pages of each row group hold the rows its footer claims, counted on its smallest
///   flat column (a footer and manifest that agree on a trillion rows in a 100 KB file would
///   otherwise keep readers busy producing nothing);
/// - in each column that `decoded` selects, a dictionary-encoded data page follows a dictionary
///   page (parquet 59 panics with "Decoder for dict should have been set" otherwise, a fuzzer
///   found). This decompresses those pages once more; verification alone (`decoded` = `None`)
///   walks only the counted column.
///
/// Pages are read with `get_next_page`, not `peek_next_page`, which in parquet 59 panics on a
/// data page without its header.
pub(super) fn check_pages(
    data: &SegmentData,
    md: &ParquetMetaData,
    path: &Path,
    decoded: Option<&ProjectionMask>,
    count_rows: bool,
) -> Result<()> {
    let reader = Arc::new(data.clone());
    for (i, rg) in md.row_groups().iter().enumerate() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(c.compressed_size()).ok())
                .and_then(|(s, n)| s.checked_add(n))
                .is_some_and(|end| end <= data.len);
            if !inside || c.data_page_offset() < 0 {
                return Err(Error::invalid(
                    path,
                    format!(
                        "row group {i}: column chunk {} lies outside the file",
                        c.column_path()
                    ),
                ));
            }
            // What the footer says a chunk uses, checked for every column: DataFusion decodes
            // the tables SQL reads itself, past the page checks below.
            #[allow(deprecated)]
            let levels_only = Encoding::BIT_PACKED;
            if let Some(e) = c
                .encodings()
                .find(|&e| e != levels_only && !written_encoding(e))
            {
                return Err(Error::invalid(
                    path,
                    format!(
                        "row group {i}: column {}: values encoded as {e}, which perfpack does not write",
                        c.column_path()
                    ),
                ));
            }
            // Dictionary-encoded values with no dictionary page: parquet 59 panics decoding
            // them. Checked here from the footer for every column (DataFusion decodes what SQL
            // reads without the page walk below); the walk checks the pages of what it decodes.
            if c.encodings()
                .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY))
                && c.dictionary_page_offset().is_none()
            {
                return Err(Error::invalid(
                    path,
                    format!(
                        "row group {i}: column {} is dictionary-encoded but has no dictionary page",
                        c.column_path()
                    ),
                ));
            }
        }
        let counted = rg
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| count_rows && c.column_descr().max_rep_level() == 0)
            .min_by_key(|(_, c)| c.compressed_size())
            .map(|(leaf, _)| leaf);
        for (leaf, col) in rg.columns().iter().enumerate() {
            let decodes = decoded.is_some_and(|m| m.leaf_included(leaf));
            if !decodes && Some(leaf) != counted {
                continue;
            }
            let bad = |e: parquet::errors::ParquetError| Error::parquet(path, e);
            let mut pages =
                SerializedPageReader::new(reader.clone(), col, rg.num_rows() as usize, None)
                    .map_err(bad)?;
            let mut held = 0u64;
            let mut dictionary = false;
            let descr = col.column_descr();
            let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());
            while let Some(page) = pages.get_next_page().map_err(bad)? {
                if decodes && let Err(why) = check_data_page(&page, max_def, max_rep) {
                    return Err(Error::invalid(
                        path,
                        format!("row group {i}: column {}: {why}", col.column_path()),
                    ));
                }
                let (rows, encoding) = match page {
                    Page::DataPage {
                        num_values,
                        encoding,
                        ..
                    } => (u64::from(num_values), encoding),
                    Page::DataPageV2 {
                        num_rows, encoding, ..
                    } => (u64::from(num_rows), encoding),
                    Page::DictionaryPage { .. } => {
                        dictionary = true;
                        continue;
                    }
                };
                held += rows;
                let needs_dictionary = matches!(
                    encoding,
                    Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY
                );
                if decodes && needs_dictionary && !dictionary {
                    return Err(Error::invalid(
                        path,
                        format!(
                            "row group {i}: column {} has a dictionary-encoded page but no dictionary page",
                            col.column_path()
                        ),
                    ));
                }
            }
            if Some(leaf) == counted && held != rg.num_rows() as u64 {
                return Err(Error::invalid(
                    path,
                    format!(
                        "row group {i} claims {} rows but its pages hold {held}",
                        rg.num_rows()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What parquet 59's decoders trust in a decompressed data page of a flat column (no
/// repetition levels) and panic on when it lies, as a fuzzer found:
/// - the definition levels lie within the page, and (max level 1, read by a packed decoder
///   that trusts a run's length) their bit-packed runs within the levels;
/// - a dictionary-encoded page has its index bit width (the first byte of its values), at most
///   32;
/// - the values' encoding is one perfpack writes, DELTA_BINARY_PACKED only in a column without
///   nulls and with a header that counts the page's values;
/// - a dictionary page of no values holds no data.
fn check_data_page(page: &Page, max_def: i16, max_rep: i16) -> std::result::Result<(), String> {
    const PAST: &str = "definition levels that run past their data";
    let encoding = match page {
        Page::DataPage { encoding, .. } | Page::DataPageV2 { encoding, .. } => *encoding,
        Page::DictionaryPage { .. } => Encoding::PLAIN,
    };
    if !written_encoding(encoding) {
        return Err(format!(
            "values encoded as {encoding}, which perfpack does not write"
        ));
    }
    if max_rep > 0 {
        return Ok(());
    }
    let (buf, num_values, encoding, levels) = match page {
        Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            ..
        } => {
            let levels = match (max_def, def_level_encoding) {
                (0, _) => Some(0..0),
                (_, Encoding::RLE) => buf.get(..4).and_then(|len| {
                    let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
                    let end = 4usize.checked_add(len)?;
                    (end <= buf.len()).then_some(4..end)
                }),
                // One bit a value at max level 1, and parquet slices that many bytes off.
                #[allow(deprecated)]
                (1, Encoding::BIT_PACKED) => {
                    let n = (*num_values as usize).div_ceil(8);
                    (n <= buf.len()).then_some(0..n)
                }
                _ => return Ok(()),
            };
            (buf, *num_values, *encoding, levels)
        }
        Page::DataPageV2 {
            buf,
            num_values,
            encoding,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            let start = *rep_levels_byte_len as usize;
            let end = start.checked_add(*def_levels_byte_len as usize);
            let levels = end.filter(|&e| e <= buf.len()).map(|e| start..e);
            (buf, *num_values, *encoding, levels)
        }
        // The plain decoder spreads the page's bytes over its count, and divides by zero.
        Page::DictionaryPage {
            buf, num_values, ..
        } => {
            if *num_values == 0 && !buf.is_empty() {
                return Err("a dictionary page of no values that holds data".into());
            }
            return Ok(());
        }
    };
    let Some(levels) = levels else {
        return Err(PAST.into());
    };
    // For the v1 RLE levels, the values follow them; v2 and bit-packed levels likewise.
    let values_at = levels.end;
    if max_def == 1 && !bit_packed_runs_fit(&buf[levels], num_values) {
        return Err(PAST.into());
    }
    // perfpack writes DELTA_BINARY_PACKED for its sort key only, a column without nulls; the
    // decoder trusts the header's value count (and its subtraction overflows on a zero).
    if encoding == Encoding::DELTA_BINARY_PACKED {
        let mut at = values_at;
        // Block size, miniblocks per block, value count, first value (zigzag): each a ULEB128
        // that ends within 64 bits (the decoder shifts past them otherwise).
        let header: Option<Vec<u64>> = (0..4).map(|_| uleb128(buf, &mut at)).collect();
        let total = header.map(|h| h[2]);
        if max_def != 0 || num_values == 0 || total != Some(u64::from(num_values)) {
            return Err(format!(
                "a DELTA_BINARY_PACKED page whose header does not count its {num_values} values"
            ));
        }
    }
    let dictionary = matches!(
        encoding,
        Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY
    );
    if dictionary {
        // The index decoder reads the width byte unchecked.
        match buf.get(values_at) {
            None => return Err("a dictionary-encoded page without its index width".into()),
            Some(&width) if width > 32 => {
                return Err("dictionary indices wider than 32 bits".into());
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Walks the RLE / bit-packing hybrid at bit width 1 as far as the decoder reads (until
/// `num_values` levels are covered): a ULEB128 header, then for a bit-packed run (header & 1)
/// `header >> 1` bytes of 8 levels each, for an RLE run one byte. False when a bit-packed run
/// claims more bytes than are left.
fn bit_packed_runs_fit(levels: &[u8], num_values: u32) -> bool {
    let (mut at, mut covered) = (0usize, 0u64);
    while covered < u64::from(num_values) && at < levels.len() {
        let Some(header) = uleb128(levels, &mut at) else {
            return false;
        };
        let n = header >> 1;
        if header & 1 == 1 {
            if n > (levels.len() - at) as u64 {
                return false;
            }
            at += n as usize;
            covered = covered.saturating_add(n.saturating_mul(8));
        } else {
            at += 1;
            covered = covered.saturating_add(n);
        }
    }
    true
}

/// The value encodings perfpack's writer uses. parquet 59's other decoders (BYTE_STREAM_SPLIT,
/// DELTA_*_BYTE_ARRAY) index past hostile data and panic, so no other is decoded.
fn written_encoding(e: Encoding) -> bool {
    matches!(
        e,
        Encoding::PLAIN
            | Encoding::PLAIN_DICTIONARY
            | Encoding::RLE_DICTIONARY
            | Encoding::RLE
            | Encoding::DELTA_BINARY_PACKED
    )
}

/// The ULEB128 integer at `*at` in `buf`, moving `*at` past it; `None` when it runs off the
/// end or past 64 bits.
fn uleb128(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}
