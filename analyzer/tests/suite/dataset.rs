//! `perfpack export --dataset` into a local directory and `perfpack sql --dataset` over it: the
//! Hive layout, the same rows as a session over the bundles, idempotent re-export, pruning by
//! host, and the refusals.

use std::path::Path;

use super::{fails, fixture, ok, perfpack};

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

fn export(ds: &Path, names: &[&str]) -> std::process::Output {
    let mut args = vec!["export".to_string(), "--dataset".into()];
    args.push(ds.to_string_lossy().into_owned());
    args.extend(
        names
            .iter()
            .map(|n| fixture(n).to_string_lossy().into_owned()),
    );
    perfpack(args)
}

fn sql(target: &[String], q: &str) -> std::process::Output {
    let mut args = vec!["sql".to_string()];
    args.extend(target.iter().cloned());
    args.extend(["-q".into(), q.into(), "--format".into(), "csv".into()]);
    perfpack(args)
}

#[test]
fn export_writes_a_hive_dataset_that_queries_like_the_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("fleet");
    ok(&export(&ds, &["after", "basic", "before"]));
    let files = files_under(&ds);
    assert!(files.contains(&"block_rq/host=fixture-basic/bundle=basic/seg-000001.parquet".into()));
    assert!(files.contains(&"bundles/host=fixture-after/bundle=after/bundle.parquet".into()));
    assert!(files.contains(&"bundles/host=fixture-after/bundle=after/_manifest.json".into()));

    let bundles: Vec<String> = ["after", "basic", "before"]
        .iter()
        .map(|n| fixture(n).to_string_lossy().into_owned())
        .collect();
    let dataset = vec!["--dataset".to_string(), ds.to_string_lossy().into_owned()];
    for q in [
        "SELECT bundle, host, count(*), sum(weight) FROM stack_sample GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT host, count(*), max(latency_ns) FROM block_io GROUP BY 1 ORDER BY 1",
        "SELECT * FROM cpu_frequency ORDER BY 1, 2, 3, 5 LIMIT 20",
    ] {
        assert_eq!(ok(&sql(&dataset, q)), ok(&sql(&bundles, q)), "{q}");
    }

    // Again, and with one bundle twice over: the same files, the same rows.
    ok(&export(&ds, &["basic"]));
    ok(&export(&ds, &["after", "basic", "before"]));
    assert_eq!(files_under(&ds), files);
    let q = "SELECT host, count(*) FROM sched_switch GROUP BY 1 ORDER BY 1";
    assert_eq!(ok(&sql(&dataset, q)), ok(&sql(&bundles, q)));

    // The dataset's root stands for its bundles wherever bundles are taken.
    let root = ds.to_string_lossy().into_owned();
    assert_eq!(
        ok(&perfpack(["fleet", root.as_str()])),
        ok(&perfpack(
            std::iter::once("fleet".to_string()).chain(bundles.iter().cloned())
        ))
    );
    let info = ok(&perfpack(["info", "--format", "json", root.as_str()]));
    assert_eq!(info.matches("\"bundle_id\"").count(), 3, "{info}");
}

#[test]
fn block_io_over_a_dataset_reads_only_the_hosts_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("fleet");
    ok(&export(&ds, &["after", "basic", "before"]));
    // A host's block_rq files made unreadable: a query on another host must not touch them.
    let victim = ds.join("block_rq/host=fixture-basic/bundle=basic/seg-000000.parquet");
    std::fs::write(&victim, b"not parquet").unwrap();
    let dataset = vec!["--dataset".to_string(), ds.to_string_lossy().into_owned()];
    let q = |h: &str| format!("SELECT count(*) AS n FROM block_io WHERE host = '{h}'");
    assert_eq!(ok(&sql(&dataset, &q("fixture-after"))), "n\n800\n");
    let q2 = "SELECT count(*) AS n FROM block_rq WHERE host = 'fixture-before'";
    assert_eq!(ok(&sql(&dataset, q2)), "n\n2400\n");
    // ... and one that does names the file.
    let err = fails(&sql(&dataset, &q("fixture-basic")));
    assert!(err.contains("seg-000000.parquet"), "{err}");
}

#[test]
fn export_and_dataset_refusals_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("fleet");
    // Not a dataset.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = fails(&sql(
        &["--dataset".into(), empty.to_string_lossy().into_owned()],
        "SELECT 1",
    ));
    assert!(err.contains("not a perfpack dataset"), "{err}");
    // Another bundle under a name the dataset already holds for this host.
    ok(&export(&ds, &["basic"]));
    // (The report takes the dataset as it takes bundles.)
    let html = tmp.path().join("r.html");
    ok(&perfpack([
        "report".as_ref(),
        ds.as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("bundles/host=fixture-basic/bundle=basic (complete)"));
    let other = tmp.path().join("basic.ppk");
    super::copy_dir(&fixture("basic"), &other);
    let manifest = other.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("fixture-basic-1", "fixture-basic-2"),
    )
    .unwrap();
    let before = files_under(&ds);
    let err = fails(&perfpack([
        "export".as_ref(),
        "--dataset".as_ref(),
        ds.as_os_str(),
        other.as_os_str(),
    ]));
    assert!(
        err.contains("fixture-basic-1") && err.contains("rename"),
        "{err}"
    );
    assert_eq!(files_under(&ds), before, "nothing changed");
    // Bundles and --dataset together.
    let err = fails(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "--dataset".as_ref(),
        ds.as_os_str(),
        "-q".as_ref(),
        "SELECT 1".as_ref(),
    ]));
    assert!(err.contains("not both"), "{err}");
}
