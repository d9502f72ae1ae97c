//! `gen-testdata`: regenerates the committed fixture bundles under `testdata/` (or another
//! directory), each with its `NAME.truth.json`. Deterministic: the same version writes the same
//! bytes.

use std::path::PathBuf;

use anyhow::Context as _;
use perfpack_testgen::fixtures;

fn main() -> anyhow::Result<()> {
    // `gen-testdata --fleet N DIR`: N instance bundles for `perfpack fleet` (see `fleet`);
    // `--fleet-large N DIR`: N busier ones (~1.7 M rows each) for the dataset benchmark.
    let args: Vec<String> = std::env::args().collect();
    let flag = args.get(1).map(String::as_str);
    if matches!(flag, Some("--fleet" | "--fleet-large")) {
        let usage = "usage: gen-testdata --fleet|--fleet-large N DIR";
        let n: usize = args.get(2).and_then(|n| n.parse().ok()).context(usage)?;
        let dir = PathBuf::from(args.get(3).context(usage)?);
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        let scenarios = if flag == Some("--fleet") {
            perfpack_testgen::fleet(n)
        } else {
            perfpack_testgen::fleet_large(n)
        };
        for sc in scenarios {
            let bundle = dir.join(format!("{}.ppk", sc.name));
            perfpack_testgen::generate(&sc, &bundle)
                .with_context(|| format!("generating {}", bundle.display()))?;
        }
        println!("wrote {n} bundles into {}", dir.display());
        return Ok(());
    }
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")));
    for sc in fixtures() {
        let bundle = out.join(format!("{}.ppk", sc.name));
        let truth = perfpack_testgen::generate(&sc, &bundle)
            .with_context(|| format!("generating {}", bundle.display()))?;
        let truth_path = out.join(format!("{}.truth.json", sc.name));
        let json = serde_json::to_string_pretty(&truth)? + "\n";
        std::fs::write(&truth_path, json).with_context(|| truth_path.display().to_string())?;
        println!("wrote {} and {}", bundle.display(), truth_path.display());
    }
    Ok(())
}
