//! One figure of each view's golden (`tests/data/views/*.csv`) computed here, by hand, from the
//! basic fixture's raw rows (base tables, never a view) or from the generator's truth file, so
//! that no golden rests only on the code that produced it. The views covered elsewhere
//! (block_io, runqueue_latency, cpu_frequency, ...) have their truth tests in `sql.rs`.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{fixture, ok, perfpack};

/// The rows of `sql` over the basic fixture, as JSON objects.
fn rows(sql: &str) -> Vec<Value> {
    let out = ok(&perfpack([
        "sql".as_ref(),
        fixture("basic").as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
        "-q".as_ref(),
        sql.as_ref(),
    ]));
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn one(sql: &str) -> Value {
    let r = rows(sql);
    assert_eq!(r.len(), 1, "{sql}: {r:?}");
    r[0].clone()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn truth() -> Value {
    let path = fixture("basic").with_extension("truth.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        "{what}: {a} vs {b}"
    );
}

/// (issue, complete) of every request of `disk` completed in the fixture, paired by sector from
/// the raw block_rq rows.
fn requests(disk: &str) -> Vec<(i64, i64, String)> {
    let mut issued: HashMap<i64, i64> = HashMap::new();
    let mut out = Vec::new();
    for r in rows(&format!(
        "SELECT ts_ns, phase, sector, rwbs FROM block_rq WHERE disk = '{disk}' ORDER BY ts_ns"
    )) {
        let (ts, sector) = (r["ts_ns"].as_i64().unwrap(), r["sector"].as_i64().unwrap());
        match r["phase"].as_str().unwrap() {
            "issue" => {
                issued.insert(sector, ts);
            }
            "complete" => {
                if let Some(i) = issued.remove(&sector) {
                    out.push((i, ts, r["rwbs"].as_str().unwrap().to_string()));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn disk_utilization_and_metric_series_from_the_raw_requests() {
    let reqs = requests("nvme0n1");
    let (t0, t1) = (1_000_000_000_000i64, 1_001_000_000_000i64);
    // Completions in (t0, t1], and the time in (t0, t1] with a request in flight.
    let reads = reqs
        .iter()
        .filter(|r| r.1 > t0 && r.1 <= t1 && r.2.starts_with('R'))
        .count();
    let writes = reqs
        .iter()
        .filter(|r| r.1 > t0 && r.1 <= t1 && !r.2.starts_with('R'))
        .count();
    let mut spans: Vec<(i64, i64)> = reqs
        .iter()
        .map(|r| (r.0.max(t0), r.1.min(t1)))
        .filter(|s| s.1 > s.0)
        .collect();
    spans.sort_unstable();
    let (mut busy, mut reach) = (0i64, t0);
    for (a, b) in spans {
        let a = a.max(reach);
        if b > a {
            busy += b - a;
            reach = b;
        }
    }
    let row = one(&format!(
        "SELECT r_per_s, w_per_s, util_pct FROM disk_utilization WHERE disk = 'nvme0n1' AND ts_ns = {t1}"
    ));
    close(f(&row["r_per_s"]), reads as f64, "r_per_s");
    close(f(&row["w_per_s"]), writes as f64, "w_per_s");
    close(f(&row["util_pct"]), busy as f64 / 1e7, "util_pct");
    // No interval is busier than its length.
    let max = one("SELECT MAX(util_pct) AS m FROM disk_utilization");
    assert!(f(&max["m"]) <= 100.0, "{max}");
    let m = one(&format!(
        "SELECT value FROM metric_series WHERE metric = 'disk nvme0n1 iops' AND ts_ns = {t1}"
    ));
    close(
        f(&m["value"]),
        (reads + writes) as f64,
        "metric_series iops",
    );
}

#[test]
fn execsnoop_is_the_generated_exec() {
    // The generator's bash → tar exec at 3 s, with the command line it wrote.
    let r = one("SELECT ts_ns, pid, ppid, comm, filename, args FROM execsnoop");
    assert_eq!(r["pid"], 5001);
    assert_eq!(r["ppid"], 5000);
    assert_eq!(r["comm"], "tar");
    assert_eq!(r["filename"], "/usr/bin/tar");
    assert_eq!(
        r["args"],
        "tar czf /tmp/alice-orders.tgz /root/orders /home/alice/orders"
    );
    let raw = one("SELECT ts_ns FROM sched_process WHERE event = 'exec'");
    assert_eq!(r["ts_ns"], raw["ts_ns"]);
}

#[test]
fn iosnoop_and_latency_series_count_every_generated_request() {
    let t = truth();
    let n = t["block"]["count"].as_u64().unwrap();
    let io = one("SELECT COUNT(*) AS n, MAX(latency_ms) AS max_ms FROM iosnoop");
    assert_eq!(io["n"].as_u64(), Some(n));
    close(
        f(&io["max_ms"]),
        t["block"]["max_ns"].as_f64().unwrap() / 1e6,
        "iosnoop max",
    );
    let s =
        one("SELECT SUM(n) AS n, MAX(max_ns) AS max_ns FROM latency_series WHERE source = 'block'");
    assert_eq!(s["n"].as_u64(), Some(n));
    close(
        f(&s["max_ns"]),
        t["block"]["max_ns"].as_f64().unwrap(),
        "max",
    );
}

/// The raw value of a counter at a read time.
fn counter(source: &str, name: &str, instance: Option<&str>, ts: i64) -> f64 {
    let inst = instance.map_or("instance IS NULL".to_string(), |i| {
        format!("instance = '{i}'")
    });
    f(&one(&format!(
        "SELECT value FROM sys_counter WHERE source = '{source}' AND name = '{name}' AND {inst} AND ts_ns = {ts}"
    ))["value"])
}

#[test]
fn counter_views_are_the_deltas_of_the_raw_counters() {
    let (t0, t1) = (1_000_000_000_000i64, 1_001_000_000_000i64);
    let delta =
        |source, name, inst| counter(source, name, inst, t1) - counter(source, name, inst, t0);
    // sys_counter_delta: the difference of two reads, and per second over their interval.
    let d = one(&format!(
        "SELECT delta, rate_per_s FROM sys_counter_delta WHERE source = 'stat' AND name = 'user_ns' AND instance = 'cpu0' AND ts_ns = {t1}"
    ));
    close(
        f(&d["delta"]),
        delta("stat", "user_ns", Some("cpu0")),
        "delta",
    );
    close(
        f(&d["rate_per_s"]),
        delta("stat", "user_ns", Some("cpu0")),
        "rate",
    );
    let net = one(&format!(
        "SELECT rx_pkts_per_s FROM network WHERE interface = 'eth0' AND ts_ns = {t1}"
    ));
    close(
        f(&net["rx_pkts_per_s"]),
        delta("net_dev", "rx_packets", Some("eth0")),
        "rx_pkts_per_s",
    );
    let tcp = one(&format!(
        "SELECT in_segs_per_s FROM network_tcp WHERE ts_ns = {t1}"
    ));
    close(
        f(&tcp["in_segs_per_s"]),
        delta("snmp", "Tcp_InSegs", None),
        "in_segs_per_s",
    );
    let p = one(&format!(
        "SELECT cpu_some_pct FROM pressure WHERE ts_ns = {t1}"
    ));
    close(
        f(&p["cpu_some_pct"]),
        delta("pressure", "cpu_some_total_ns", None) / 1e9 * 100.0,
        "cpu_some_pct",
    );
}

#[test]
fn pidstat_is_the_raw_cpu_time_over_the_interval() {
    let raw = rows("SELECT ts_ns, utime_ns FROM process_stat WHERE pid = 1210 ORDER BY ts_ns");
    let (a, b) = (&raw[0], &raw[1]);
    let dur = (b["ts_ns"].as_i64().unwrap() - a["ts_ns"].as_i64().unwrap()) as f64;
    let usr = (b["utime_ns"].as_i64().unwrap() - a["utime_ns"].as_i64().unwrap()) as f64;
    let r = one(&format!(
        "SELECT usr_pct FROM pidstat WHERE pid = 1210 AND ts_ns = {}",
        b["ts_ns"]
    ));
    close(f(&r["usr_pct"]), 100.0 * usr / dur, "usr_pct");
}

#[test]
fn runqlat_counts_every_generated_wakeup() {
    let t = truth();
    let total = one("SELECT SUM(count) AS n FROM runqlat");
    assert_eq!(total["n"].as_u64(), t["runq"]["count"].as_u64());
    let by_bucket: BTreeMap<String, u64> = rows("SELECT bucket, count FROM runqlat")
        .iter()
        .map(|r| (r["bucket"].to_string(), r["count"].as_u64().unwrap()))
        .collect();
    for (bucket, n) in t["runq"]["log2_buckets"].as_object().unwrap() {
        assert_eq!(
            by_bucket.get(bucket),
            n.as_u64().as_ref(),
            "bucket {bucket}"
        );
    }
}

#[test]
fn syscall_views_pair_the_raw_enters_and_exits() {
    let t = truth();
    let total: u64 = t["syscalls_by_name"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let d = one("SELECT COUNT(*) AS n FROM syscall_duration");
    assert_eq!(d["n"].as_u64(), Some(total));
    // The first call of pid 1210, by hand from its enter and exit rows.
    let raw = rows("SELECT ts_ns, phase FROM syscall WHERE tid = 1210 ORDER BY ts_ns LIMIT 2");
    assert_eq!(
        (raw[0]["phase"].as_str(), raw[1]["phase"].as_str()),
        (Some("enter"), Some("exit"))
    );
    let first = one(&format!(
        "SELECT dur_ns FROM syscall_duration WHERE tid = 1210 AND ts_ns = {}",
        raw[0]["ts_ns"]
    ));
    assert_eq!(
        first["dur_ns"].as_i64(),
        Some(raw[1]["ts_ns"].as_i64().unwrap() - raw[0]["ts_ns"].as_i64().unwrap())
    );
    let exits = one("SELECT COUNT(*) AS n FROM syscall WHERE pid = 1210 AND phase = 'exit'");
    let by = one("SELECT count FROM syscount_by_process WHERE pid = 1210");
    assert_eq!(by["count"], exits["n"]);
}

#[test]
fn top_processes_counts_the_raw_samples() {
    let t = truth();
    let raw = one("SELECT COUNT(*) AS n FROM stack_sample WHERE pid = 1210");
    let r = one("SELECT samples, pct FROM top_processes WHERE pid = 1210");
    assert_eq!(r["samples"], raw["n"]);
    close(
        f(&r["pct"]),
        100.0 * f(&raw["n"]) / t["samples"].as_f64().unwrap(),
        "pct",
    );
}

#[test]
fn a_bundle_without_cgroups_has_every_cpu_sample_under_no_cgroup() {
    // The fixture predates cgroups: each of its CPU samples is there, with no cgroup.
    let t = truth();
    let r = one("SELECT cgroup, samples, pct FROM cgroup_top");
    assert_eq!(r["cgroup"], serde_json::Value::Null);
    assert_eq!(r["samples"].as_u64(), t["samples"].as_u64());
    close(f(&r["pct"]), 100.0, "pct");
    let s = one("SELECT COUNT(*) AS n, COUNT(cgroup_id) AS with_id FROM cgroup_sample");
    assert_eq!(s["n"].as_u64(), t["samples"].as_u64());
    assert_eq!(s["with_id"].as_u64(), Some(0));
}
