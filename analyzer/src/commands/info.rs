//! `perfpack info`: sources, statuses, time range, rows, losses, host and clocks of bundles.

use std::io::Write as _;

use super::Format;

pub fn run(bundles: &[String], format: Format) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(bundles)?;
    let infos: Vec<_> = bundles.iter().map(crate::info::summarize).collect();
    let mut stdout = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, &infos)?;
            writeln!(stdout)?;
        }
        Format::Table => {
            for (i, info) in infos.iter().enumerate() {
                if i > 0 {
                    writeln!(stdout)?;
                }
                stdout.write_all(crate::info::render_text(info).as_bytes())?;
            }
        }
    }
    stdout.flush()?;
    Ok(())
}
