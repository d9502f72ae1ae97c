//! `perfpack fleet` over generated instances: the odd ones are ranked first with the right
//! reason, the rest are not flagged.

use serde_json::Value;

use super::{fails, fixture, ok, perfpack};

#[test]
fn a_slow_disk_and_a_slow_clock_stand_out_of_twenty() {
    let dir = tempfile::tempdir().unwrap();
    // i-006 has the slow disk, i-013 the slow clock.
    for sc in perfpack_testgen::fleet(20) {
        perfpack_testgen::generate(&sc, &dir.path().join(format!("{}.ppk", sc.name))).unwrap();
    }
    let pattern = dir.path().join("i-*.ppk").display().to_string();
    let ranked: Value =
        serde_json::from_str(&ok(&perfpack(["fleet", &pattern, "--format", "json"]))).unwrap();
    let ranked = ranked.as_array().unwrap();
    assert_eq!(ranked.len(), 20);
    let top: Vec<&str> = ranked[..2]
        .iter()
        .map(|r| r["bundle"].as_str().unwrap())
        .collect();
    assert!(top.contains(&"i-006") && top.contains(&"i-013"), "{top:?}");
    for r in &ranked[..2] {
        let reasons: Vec<&str> = r["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["feature"].as_str().unwrap())
            .collect();
        if r["bundle"] == "i-006" {
            // The disk, and only the disk.
            assert!(reasons.iter().all(|f| f.starts_with("block I/O")), "{r}");
        } else {
            // The clock, and what a slow clock does to the run queue and CPU busy time.
            assert!(reasons.contains(&"busy MHz"), "{r}");
            assert!(!reasons.iter().any(|f| f.starts_with("block I/O")), "{r}");
        }
        assert!(
            r["reasons"][0]["evidence"]
                .as_str()
                .unwrap()
                .starts_with("perfpack ")
        );
    }
    for r in &ranked[2..] {
        assert_eq!(r["flagged"], false, "{r}");
    }
}

#[test]
fn a_fleet_needs_three_bundles() {
    let b = fixture("basic").display().to_string();
    let err = fails(&perfpack(["fleet", &b, &b]));
    assert!(err.contains("at least 3 bundles"), "{err}");
}

#[test]
fn an_instance_with_more_of_a_sampled_event_stands_out() {
    use perfpack_testgen::Scenario;
    let dir = tempfile::tempdir().unwrap();
    // Every blocked switch-out is a `sched:sched_switch` stack sample; i-3 runs twice as many
    // jobs (each ends in one) as the other five over the same 10 s.
    const EVENT: &str = "sched:sched_switch";
    for i in 0..6u64 {
        let mut sc = Scenario::pair_side(&format!("i-{i}"), 2500.0);
        sc.seed = 100 + i;
        sc.switch_stacks = true;
        if i == 3 {
            sc.job_interval_ns /= 2.0;
        }
        perfpack_testgen::generate(&sc, &dir.path().join(format!("{}.ppk", sc.name))).unwrap();
    }
    let pattern = dir.path().join("i-*.ppk").display().to_string();
    let ranked: Value = serde_json::from_str(&ok(&perfpack([
        "fleet", &pattern, "--event", EVENT, "--format", "json",
    ])))
    .unwrap();
    let ranked = ranked.as_array().unwrap();
    assert_eq!(ranked[0]["bundle"], "i-3", "{ranked:?}");
    let rate = format!("{EVENT} per s");
    let reason = ranked[0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["feature"] == rate.as_str())
        .unwrap_or_else(|| panic!("no {rate} reason: {}", ranked[0]));
    // Its rate is its samples (weight 1 each) over the scenario's 10 s, counted in SQL.
    let n = super::sql_rows(
        &dir.path().join("i-3.ppk"),
        &format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM stack_sample WHERE event = '{EVENT}'"),
    )[0]["n"]
        .as_u64()
        .unwrap();
    let value = reason["value"].as_f64().unwrap();
    assert!((value - n as f64 / 10.0).abs() < 1e-6, "{reason} vs {n}");
    assert!(
        value > 1.5 * reason["fleet_median"].as_f64().unwrap(),
        "{reason}"
    );
    assert!(
        reason["evidence"]
            .as_str()
            .unwrap()
            .contains(&format!("--event {EVENT}")),
        "{reason}"
    );
    // The others are not flagged for it.
    for r in &ranked[1..] {
        assert!(!r["reasons"].to_string().contains(&rate), "{r}");
    }
    // An event no bundle sampled: one line naming it.
    let err = fails(&perfpack(["fleet", &pattern, "--event", "page-faults"]));
    assert!(err.contains("page-faults"), "{err}");
}
