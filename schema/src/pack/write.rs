//! Writing a packed bundle: the bundle's files as stored entries (ZIP64 where needed), with
//! fixed times so the same bundle packs to the same bytes, written beside the output and moved
//! into place.

use super::*;

/// Files of a bundle directory in packing order: the manifest first, then tables sorted by path.
fn bundle_files(dir: &Path) -> Result<Vec<String>> {
    let manifest = dir.join(crate::MANIFEST_FILE);
    if !manifest.is_file() {
        return Err(Error::invalid(
            dir,
            "not a perfpack bundle: no manifest.json",
        ));
    }
    let mut names = vec![crate::MANIFEST_FILE.to_string()];
    let tables_dir = dir.join(crate::TABLES_DIR);
    let mut rest = Vec::new();
    if tables_dir.is_dir() {
        for table in fs::read_dir(&tables_dir).map_err(|e| Error::io(&tables_dir, e))? {
            let table = table.map_err(|e| Error::io(&tables_dir, e))?;
            let tdir = table.path();
            if !tdir.is_dir() {
                continue;
            }
            for f in fs::read_dir(&tdir).map_err(|e| Error::io(&tdir, e))? {
                let f = f.map_err(|e| Error::io(&tdir, e))?;
                let fname = f.file_name().to_string_lossy().into_owned();
                if f.path().is_file() && fname.ends_with(".parquet") {
                    rest.push(format!(
                        "{}/{}/{}",
                        crate::TABLES_DIR,
                        table.file_name().to_string_lossy(),
                        fname
                    ));
                }
            }
        }
    }
    rest.sort();
    names.extend(rest);
    Ok(names)
}

/// Packs a bundle directory into one stored ZIP file at `out` (through a temporary file, so a
/// failure leaves no half-written archive). Returns the archive size in bytes.
pub fn pack_dir(dir: &Path, out: &Path, overwrite: bool) -> Result<u64> {
    if let Ok(meta) = fs::metadata(out)
        && !meta.is_file()
    {
        // A rename over a device or FIFO (`-o /dev/null` as root) would replace it.
        return Err(Error::invalid(
            out,
            "is not a regular file; refusing to replace it with a bundle",
        ));
    }
    if out.exists() && !overwrite {
        return Err(Error::invalid(
            out,
            "already exists; refusing to overwrite (use --force)",
        ));
    }
    let names = bundle_files(dir)?;
    let tmp = out.with_extension("ppk.tmp");
    let result = write_archive(dir, &names, &tmp);
    match result {
        Ok(size) => {
            fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
            Ok(size)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

struct Written {
    name: String,
    offset: u64,
    size: u64,
    crc: u32,
}

fn write_archive(dir: &Path, names: &[String], out: &Path) -> Result<u64> {
    let io_err = |e| Error::io(out, e);
    let mut w = BufWriter::new(File::create(out).map_err(io_err)?);
    let mut written = Vec::with_capacity(names.len());
    let mut offset = 0u64;
    for name in names {
        let src = dir.join(name);
        let mut f = File::open(&src).map_err(|e| Error::io(&src, e))?;
        let size = f.metadata().map_err(|e| Error::io(&src, e))?.len();
        // The CRC goes in the header before the data: compute it in a first pass over the file.
        let mut crc = Crc32::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(&src, e))?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
        }
        let crc = crc.finish();
        let big = size >= 0xFFFF_FFFF;
        let mut h = Vec::with_capacity(30 + name.len() + 20);
        put32(&mut h, LOCAL_SIG);
        put16(&mut h, if big { 45 } else { 20 });
        put16(&mut h, FLAG_UTF8);
        put16(&mut h, 0); // stored
        put16(&mut h, 0);
        put16(&mut h, DOS_DATE);
        put32(&mut h, crc);
        let small = if big { 0xFFFF_FFFF } else { size as u32 };
        put32(&mut h, small);
        put32(&mut h, small);
        put16(&mut h, name.len() as u16);
        put16(&mut h, if big { 20 } else { 0 });
        h.extend_from_slice(name.as_bytes());
        if big {
            put16(&mut h, ZIP64_EXTRA_ID);
            put16(&mut h, 16);
            put64(&mut h, size);
            put64(&mut h, size);
        }
        w.write_all(&h).map_err(io_err)?;
        f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(&src, e))?;
        let copied = io::copy(&mut f.take(size), &mut w).map_err(io_err)?;
        if copied != size {
            return Err(Error::invalid(&src, "file changed size while packing"));
        }
        written.push(Written {
            name: name.clone(),
            offset,
            size,
            crc,
        });
        offset += h.len() as u64 + size;
    }
    let cd_offset = offset;
    let mut cd = Vec::new();
    for e in &written {
        let zip64_fields: Vec<u64> = [e.size, e.size, e.offset]
            .into_iter()
            .filter(|&v| v >= 0xFFFF_FFFF)
            .collect();
        let clamp = |v: u64| {
            if v >= 0xFFFF_FFFF {
                0xFFFF_FFFF
            } else {
                v as u32
            }
        };
        put32(&mut cd, CENTRAL_SIG);
        put16(&mut cd, 0x0300 | 45); // made by Unix, spec 4.5
        put16(&mut cd, if zip64_fields.is_empty() { 20 } else { 45 });
        put16(&mut cd, FLAG_UTF8);
        put16(&mut cd, 0);
        put16(&mut cd, 0);
        put16(&mut cd, DOS_DATE);
        put32(&mut cd, e.crc);
        put32(&mut cd, clamp(e.size));
        put32(&mut cd, clamp(e.size));
        put16(&mut cd, e.name.len() as u16);
        put16(
            &mut cd,
            if zip64_fields.is_empty() {
                0
            } else {
                4 + 8 * zip64_fields.len() as u16
            },
        );
        put16(&mut cd, 0); // comment
        put16(&mut cd, 0); // disk
        put16(&mut cd, 0); // internal attributes
        put32(&mut cd, 0o100_644 << 16); // regular file, rw-r--r--
        put32(&mut cd, clamp(e.offset));
        cd.extend_from_slice(e.name.as_bytes());
        if !zip64_fields.is_empty() {
            put16(&mut cd, ZIP64_EXTRA_ID);
            put16(&mut cd, 8 * zip64_fields.len() as u16);
            for v in zip64_fields {
                put64(&mut cd, v);
            }
        }
    }
    let cd_size = cd.len() as u64;
    let n = written.len() as u64;
    let need64 = n >= 0xFFFF || cd_offset >= 0xFFFF_FFFF || cd_size >= 0xFFFF_FFFF;
    if need64 {
        let rec_pos = cd_offset + cd_size;
        put32(&mut cd, ZIP64_EOCD_SIG);
        put64(&mut cd, 44);
        put16(&mut cd, 0x0300 | 45);
        put16(&mut cd, 45);
        put32(&mut cd, 0);
        put32(&mut cd, 0);
        put64(&mut cd, n);
        put64(&mut cd, n);
        put64(&mut cd, cd_size);
        put64(&mut cd, cd_offset);
        put32(&mut cd, ZIP64_LOCATOR_SIG);
        put32(&mut cd, 0);
        put64(&mut cd, rec_pos);
        put32(&mut cd, 1);
    }
    put32(&mut cd, EOCD_SIG);
    put16(&mut cd, 0);
    put16(&mut cd, 0);
    let n16 = if need64 { 0xFFFF } else { n as u16 };
    put16(&mut cd, n16);
    put16(&mut cd, n16);
    put32(&mut cd, if need64 { 0xFFFF_FFFF } else { cd_size as u32 });
    put32(
        &mut cd,
        if need64 {
            0xFFFF_FFFF
        } else {
            cd_offset as u32
        },
    );
    put16(&mut cd, 0);
    w.write_all(&cd).map_err(io_err)?;
    let f = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    f.sync_all().map_err(io_err)?;
    Ok(cd_offset + cd.len() as u64)
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}
