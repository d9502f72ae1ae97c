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
