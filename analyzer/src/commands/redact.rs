//! `perfpack redact`: a copy of a bundle with names replaced by stable hashes, or (`--check`)
//! the identifying values it still holds.

use anyhow::bail;
use perfpack_schema::Bundle;

use crate::redact::Options;

pub fn run(a: Options) -> anyhow::Result<()> {
    let bundle = Bundle::open(&a.bundle)?;
    bundle.verify()?;
    if a.check {
        return crate::redact::check::check(&bundle, &a);
    }
    let output = a
        .output
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("-o is required (or --check)"))?;
    if output.canonicalize().ok() == a.bundle.canonicalize().ok() {
        bail!(
            "{}: the output would replace the bundle itself",
            output.display()
        );
    }
    // Written next to the output and moved into place at the end: a failure leaves the output
    // path as it was.
    let staged = crate::bundle::staged::Staged::new(output, a.force, "redact")?;
    let r = crate::redact::write(&bundle, &a, staged.path())?;
    staged.commit()?;
    let mut what = vec!["the host's identity"];
    for (on, name) in [
        (r.comm, "thread names"),
        (r.paths, "paths"),
        (r.cmdline, "command lines"),
    ] {
        if on {
            what.push(name);
        }
    }
    what.push("every string outside the keep list");
    eprintln!(
        "perfpack: wrote {} with {} replaced by stable hashes{}",
        output.display(),
        what.join(", "),
        if a.salt.is_empty() {
            " (no --salt: a guessed name can be checked against them)"
        } else {
            ""
        }
    );
    Ok(())
}
