//! Block I/O requests with a known latency distribution: on `nvme0n1` a bimodal one (fast
//! flash reads and slower writes) with a few slow outliers, on `sda` a slower spinning-disk one.

use crate::Scenario;
use crate::rng::Rng;

/// One request, with the times of its three phases.
#[derive(Debug, Clone)]
pub struct Request {
    pub cpu: i32,
    pub dev: (u32, u32),
    pub disk: &'static str,
    pub issuer: (i32, i32, String),
    pub sector: u64,
    pub bytes: u64,
    pub rwbs: &'static str,
    pub insert_ns: i64,
    pub issue_ns: i64,
    pub complete_ns: i64,
}

impl Request {
    /// Issue-to-complete latency (what iosnoop and biolatency report).
    pub fn latency_ns(&self) -> i64 {
        self.complete_ns - self.issue_ns
    }
}

/// Draws the requests of a scenario, in insert order.
pub fn requests(sc: &Scenario, rng: &mut Rng) -> Vec<Request> {
    let mut out = Vec::with_capacity(sc.n_block_requests);
    let step = sc.duration_ns / (sc.n_block_requests as i64 + 1);
    for i in 0..sc.n_block_requests {
        let insert_ns = sc.start_ns() + step * (i as i64 + 1) + rng.range(0, step / 2);
        let cpu = rng.range(0, i64::from(sc.n_cpus)) as i32;
        let nvme = rng.unit() < 0.9;
        let u = rng.unit();
        let latency = if !nvme {
            rng.range(2_000_000, 12_000_000)
        } else if u < 0.70 {
            rng.range(80_000, 250_000)
        } else if u < 0.98 {
            rng.range(1_000_000, 4_000_000)
        } else {
            rng.range(50_000_000, 200_000_000)
        };
        let latency = (latency as f64 * sc.disk_latency_scale) as i64;
        let bytes = [4096u64, 8192, 16_384, 131_072][rng.range(0, 4) as usize];
        let rwbs = ["R", "R", "R", "W", "W", "WS"][rng.range(0, 6) as usize];
        let issuer = if rng.unit() < 0.8 {
            (1210 + cpu, 1210 + cpu, "postgres".to_string())
        } else {
            (80 + cpu, 80 + cpu, format!("kworker/{cpu}:1H"))
        };
        let issue_ns = insert_ns + rng.range(5_000, 50_000);
        out.push(Request {
            cpu,
            dev: if nvme { (259, 0) } else { (8, 0) },
            disk: if nvme { "nvme0n1" } else { "sda" },
            issuer,
            sector: (rng.range(2048, 500_000_000) as u64) & !7,
            bytes,
            rwbs,
            insert_ns,
            issue_ns,
            complete_ns: issue_ns + latency,
        });
    }
    out
}
