//! `perfpack compare` on the before/after fixtures (the same work at 2500 and 3000 busy MHz):
//! the raw CPU-time change is the frequency ratio, the normalized one is within noise, and the
//! verdict says so; a side without frequency data is compared uncorrected, saying why.

use std::path::Path;

use serde_json::Value;

use super::{fixture, ok, perfpack};

fn compare(a: &str, b: &str) -> Value {
    serde_json::from_str(&ok(&perfpack(["compare", a, b, "--format", "json"]))).unwrap()
}

#[test]
fn a_frequency_difference_is_explained_as_such() {
    let (before, after) = (
        fixture("before").display().to_string(),
        fixture("after").display().to_string(),
    );
    let c = compare(&before, &after);
    let busy = |side: &str, k: &str| c[side][k].as_f64().unwrap();
    let raw = busy("after", "busy_ns") / busy("before", "busy_ns");
    assert!((raw - 1.0 / 1.2).abs() < 0.03, "raw ratio {raw}");
    let norm = busy("after", "busy_ns_normalized") / busy("before", "busy_ns_normalized");
    assert!((norm - 1.0).abs() < 0.03, "normalized ratio {norm}");
    assert_eq!(
        c["before"]["frequency"]["busy_mhz"]
            .as_f64()
            .unwrap()
            .round(),
        2500.0
    );
    assert_eq!(
        c["after"]["frequency"]["busy_mhz"]
            .as_f64()
            .unwrap()
            .round(),
        3000.0
    );
    assert_eq!(c["ref_mhz"].as_f64(), Some(2500.0));
    let verdict = c["verdict"].as_str().unwrap();
    assert!(verdict.contains("explained by frequency"), "{verdict}");
    for f in c["functions"].as_array().unwrap() {
        assert_eq!(f["significant"], false, "{f}");
    }
    // System counters side by side: the busier CPUs of the slower clock.
    let busy = c["system"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["resource"] == "cpu all" && x["metric"] == "busy_pct")
        .unwrap();
    let (b, a) = (
        busy["before"].as_f64().unwrap(),
        busy["after"].as_f64().unwrap(),
    );
    assert!((b / a - 1.2).abs() < 0.03, "{busy}");
    // Same block I/O on both sides: identical distributions.
    let block = &c["latency"][0];
    assert_eq!(block["source"], "block");
    assert_eq!(block["ks"].as_f64(), Some(0.0));
    // The differential flame graph is drawn from the same stacks.
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("diff.svg");
    ok(&perfpack([
        "compare".as_ref(),
        before.as_ref(),
        after.as_ref(),
        "--flamegraph".as_ref(),
        svg.as_os_str(),
    ]));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("Differential CPU Flame Graph"));
    assert!(text.contains("ExecScan"));
    // One self-contained page (twice the same bytes), and the histogram picture.
    let page = |name: &str| {
        let html = dir.path().join(name);
        let hist = dir.path().join(format!("{name}.svg"));
        ok(&perfpack([
            "compare".as_ref(),
            before.as_ref(),
            after.as_ref(),
            "-o".as_ref(),
            html.as_os_str(),
            "--histograms".as_ref(),
            hist.as_os_str(),
        ]));
        (
            std::fs::read_to_string(html).unwrap(),
            std::fs::read_to_string(hist).unwrap(),
        )
    };
    let (html, hist) = page("a.html");
    assert_eq!(page("b.html"), (html.clone(), hist.clone()));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("explained by frequency"));
    assert!(html.contains("Differential flame graph") && html.contains("Latency distributions"));
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(external), "external fetch {external}");
    }
    // Each side's bars hold all of its block requests, run-queue waits and system calls, as
    // the generator made them.
    for side in ["before", "after"] {
        let path = fixture(side).with_extension("truth.json");
        let t: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let made = t["block"]["count"].as_u64().unwrap()
            + t["runq"]["count"].as_u64().unwrap()
            + t["syscalls_by_name"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>();
        let drawn: u64 = hist
            .split(&format!("<title>{side} ["))
            .skip(1)
            .filter_map(|t| {
                t.split_once("): ")?
                    .1
                    .split_once(' ')?
                    .0
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert_eq!(drawn, made, "{side}");
    }
    super::golden("pictures/compare-histograms.svg", &hist);
}

#[test]
fn a_side_without_frequency_data_is_compared_uncorrected() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("cpu.ppk").display().to_string();
    let text = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/import/perf-script-cpu-clock.txt")
        .display()
        .to_string();
    ok(&perfpack(["import", "perf-script", &text, "-o", &bundle]));
    let c = compare(&fixture("before").display().to_string(), &bundle);
    let verdict = c["verdict"].as_str().unwrap();
    assert!(verdict.contains("UNCORRECTED"), "{verdict}");
    assert!(verdict.contains("after: unavailable"), "{verdict}");
    assert!(c["after"]["busy_ns_normalized"].is_null());
    assert_eq!(c["after"]["frequency"]["source"], "unavailable");
}

/// Writes a generated bundle into `dir`.
fn generated(dir: &Path, sc: &perfpack_testgen::Scenario) -> String {
    let out = dir.join(format!("{}.ppk", sc.name));
    perfpack_testgen::generate(sc, &out).unwrap();
    out.display().to_string()
}

#[test]
fn a_real_regression_is_ranked_first_and_the_rest_is_noise() {
    use perfpack_testgen::Scenario;
    let dir = tempfile::tempdir().unwrap();
    let before = generated(dir.path(), &Scenario::pair_side("base", 2500.0));
    // Same work, same frequency, but one leaf function costs 30% more cycles.
    let mut sc = Scenario::pair_side("regressed", 2500.0);
    sc.cost_by_leaf.insert("heapgettup_pagemode".into(), 1.3);
    let after = generated(dir.path(), &sc);
    let c = compare(&before, &after);
    let functions = c["functions"].as_array().unwrap();
    let first = &functions[0];
    eprintln!("regression pair: {}; first: {first}", c["verdict"]);
    assert_eq!(first["function"], "heapgettup_pagemode", "{first}");
    assert_eq!(first["significant"], true, "{first}");
    let change = first["normalized_change_pct"].as_f64().unwrap();
    assert!((15.0..45.0).contains(&change), "{first}");
    // Other functions' own (self) time did not change beyond noise.
    for f in functions.iter().filter(|f| f["kind"] == "self") {
        if f["function"] != "heapgettup_pagemode" {
            assert_eq!(f["significant"], false, "{f}");
        }
    }
    let verdict = c["verdict"].as_str().unwrap();
    assert!(verdict.contains("changed beyond noise"), "{verdict}");
}

#[test]
fn configuration_differences_are_listed_first() {
    // The fixtures differ in exactly two sysctls (testdata/gen: `fixtures`).
    let (before, after) = (
        fixture("before").display().to_string(),
        fixture("after").display().to_string(),
    );
    let c = compare(&before, &after);
    let changes: Vec<(String, String, String)> = c["config_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let s = |k: &str| x[k].as_str().unwrap().to_string();
            (s("key"), s("before"), s("after"))
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "sysctl.net.ipv4.tcp_congestion_control".to_string(),
                "cubic".to_string(),
                "bbr".to_string()
            ),
            (
                "sysctl.vm.swappiness".to_string(),
                "60".to_string(),
                "10".to_string()
            ),
        ]
    );
    // In the text, right after the verdict, before anything else.
    let text = ok(&perfpack(["compare", &before, &after]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("2 configuration setting(s) differ"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[2], "what changed: 2 configuration setting(s) differ");
    assert!(
        lines[4].starts_with("sysctl.net.ipv4.tcp_congestion_control"),
        "{text}"
    );
    assert!(lines[5].starts_with("sysctl.vm.swappiness"), "{text}");
    // Each side says what moves with its block latency (the same work: the same metrics).
    let names = |k: &str| -> Vec<String> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x["metric"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("correlated_before").len(), 5, "{c}");
    assert_eq!(names("correlated_before"), names("correlated_after"));
    assert!(text.contains("what moves with block I/O latency"), "{text}");
    // A bundle compared with itself: nothing.
    let same = compare(&before, &before);
    assert_eq!(same["config_changes"].as_array().unwrap().len(), 0);
    // A side without a snapshot (an older recorder): nothing compared, and said so.
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.ppk");
    super::copy_dir(&fixture("after"), &old);
    let manifest = old.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["tables"].as_object_mut().unwrap().remove("config");
    std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    std::fs::remove_dir_all(old.join("tables/config")).unwrap();
    let old_s = old.display().to_string();
    let c = compare(&before, &old_s);
    assert_eq!(c["config_changes"].as_array().unwrap().len(), 0, "{c}");
    assert!(
        !c["verdict"].as_str().unwrap().contains("configuration"),
        "{}",
        c["verdict"]
    );
    let text = ok(&perfpack(["compare", &before, &old_s]));
    assert!(
        text.contains("what changed: the after side recorded no configuration"),
        "{text}"
    );
}

#[test]
fn another_sampled_event_is_compared_per_second_and_per_function() {
    use perfpack_testgen::Scenario;
    let dir = tempfile::tempdir().unwrap();
    // Every blocked switch-out is a `sched:sched_switch` stack sample; the after side runs
    // twice as many jobs (each ends in one), over the same 10 s.
    let mut sc = Scenario::pair_side("calm", 2500.0);
    sc.switch_stacks = true;
    let before = generated(dir.path(), &sc);
    sc.name = "busy".into();
    sc.job_interval_ns /= 2.0;
    let after = generated(dir.path(), &sc);
    const EVENT: &str = "sched:sched_switch";
    let c: Value = serde_json::from_str(&ok(&perfpack([
        "compare", &before, &after, "--event", EVENT, "--format", "json",
    ])))
    .unwrap();
    let e = &c["event"];
    assert_eq!(e["event"], EVENT);
    // Counted in SQL, per side, and per second of the scenario's 10 s.
    let count = |bundle: &str, filter: &str| -> u64 {
        super::sql_rows(
            Path::new(bundle),
            &format!(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM stack_sample s \
                 JOIN stack t ON s.bundle = t.bundle AND s.callsite_id = t.callsite_id \
                 WHERE s.event = '{EVENT}' AND {filter}"
            ),
        )[0]["n"]
            .as_u64()
            .unwrap()
    };
    let (nb, na) = (count(&before, "TRUE"), count(&after, "TRUE"));
    assert_eq!(e["before"]["samples"].as_u64(), Some(nb), "{e}");
    assert_eq!(e["after"]["samples"].as_u64(), Some(na), "{e}");
    let per_s = |side: &str| e[side]["events_per_s"].as_f64().unwrap();
    assert!((per_s("before") - nb as f64 / 10.0).abs() < 1e-6, "{e}");
    assert!((per_s("after") - na as f64 / 10.0).abs() < 1e-6, "{e}");
    assert!(na as f64 > 1.5 * nb as f64, "{nb} → {na}");
    // The function that changed most: its samples on each side are those whose stack holds
    // it, and it changed beyond noise.
    let first = &e["functions"][0];
    assert_eq!(first["significant"], true, "{first}");
    let f = first["function"].as_str().unwrap().replace('\'', "''");
    let holds = format!("array_has(t.frames, '{f}')");
    let leaf = format!("t.leaf = '{f}'");
    let which = if first["kind"] == "self" {
        &leaf
    } else {
        &holds
    };
    assert_eq!(
        first["samples_before"].as_u64(),
        Some(count(&before, which)),
        "{first}"
    );
    assert_eq!(
        first["samples_after"].as_u64(),
        Some(count(&after, which)),
        "{first}"
    );
    // The text has its table; the differential flame graph is of that event.
    let svg = dir.path().join("diff.svg");
    let text = ok(&perfpack([
        "compare".as_ref(),
        before.as_ref(),
        after.as_ref(),
        "--event".as_ref(),
        EVENT.as_ref(),
        "--flamegraph".as_ref(),
        svg.as_os_str(),
    ]));
    assert!(text.contains(&format!("{EVENT} by function")), "{text}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains(&format!("Differential {EVENT} Flame Graph")));
    // An event a side did not sample: one line naming it.
    let err = super::fails(&perfpack([
        "compare",
        &before,
        &after,
        "--event",
        "page-faults",
    ]));
    assert!(err.contains("page-faults"), "{err}");
}
