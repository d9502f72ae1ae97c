//! Time axes shared by every picture over bundles: where x = 0 is for each bundle.

use perfpack_schema::Bundle;
use perfpack_schema::time::format_wall_ns;

/// Where time starts for each bundle: a shared wall-clock origin when the recordings overlap,
/// otherwise each bundle's own start (a before/after pair lines up from zero).
#[derive(Debug, Clone)]
pub struct Origin {
    /// Per bundle: ts_ns that maps to x = 0.
    pub zero: Vec<i64>,
    /// Wall-clock time of x = 0 when shared.
    pub wall: Option<i64>,
    /// Longest span after the origin, ns.
    pub span: i64,
}

impl Origin {
    /// A SQL expression of the `ts_ns` that maps to x = 0 for the row's bundle.
    pub fn zero_sql(&self, names: &[crate::sql::session::BundleName]) -> String {
        if let [_] = names {
            return self.zero[0].to_string();
        }
        let arms: Vec<String> = names
            .iter()
            .zip(&self.zero)
            .map(|(n, z)| format!("WHEN {} THEN {z}", crate::scope::quote(&n.bundle)))
            .collect();
        format!("CASE bundle {} END", arms.join(" "))
    }

    /// What x = 0 is, for subtitles.
    pub fn describe(&self) -> String {
        match self.wall {
            Some(w) => format!("x = time from {}", format_wall_ns(w)),
            None => "x = time since each bundle started".into(),
        }
    }
}

pub fn origin(bundles: &[Bundle]) -> Origin {
    let ranges: Vec<(i64, i64, i64)> = bundles
        .iter()
        .map(|b| {
            let m = b.manifest();
            let start = &m.clocks.start;
            let end_mono = m
                .recorded_end_ns()
                .unwrap_or(start.monotonic_ns)
                .max(start.monotonic_ns);
            (start.monotonic_ns, end_mono, start.realtime_ns)
        })
        .collect();
    let walls: Vec<(i64, i64)> = ranges.iter().map(|&(s, e, w)| (w, w + (e - s))).collect();
    let first = walls.iter().map(|w| w.0).min().unwrap_or(0);
    let latest_start = walls.iter().map(|w| w.0).max().unwrap_or(0);
    let earliest_end = walls.iter().map(|w| w.1).min().unwrap_or(0);
    let overlap = latest_start <= earliest_end;
    if overlap {
        Origin {
            zero: ranges.iter().map(|&(s, _, w)| s - (w - first)).collect(),
            wall: Some(first),
            span: walls.iter().map(|w| w.1).max().unwrap_or(first) - first,
        }
    } else {
        Origin {
            zero: ranges.iter().map(|r| r.0).collect(),
            wall: None,
            span: ranges.iter().map(|r| r.1 - r.0).max().unwrap_or(0),
        }
    }
}
