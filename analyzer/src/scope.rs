//! What part of a dataset a picture covers: the `--pid/--tid/--comm/--cpu/--from/--to/--where`
//! options every picture command shares, turned into one SQL predicate. Times are per bundle
//! (each has its own CLOCK_MONOTONIC), so `--from 5` means "5 s after each bundle started".

use anyhow::{Context as _, bail};
use perfpack_schema::Bundle;

use crate::sql::session::BundleName;

/// A point in time given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    /// Nanoseconds after the bundle's recording started (`12`, `12.5s`, `500ms`, `2m`).
    Relative(i64),
    /// Wall-clock nanoseconds since the epoch (`2026-11-28T10:00:05Z`).
    Wall(i64),
    /// UTC time of day in nanoseconds (`10:00:05.5`), on the day the bundle started.
    TimeOfDay(i64),
}

/// Durations parse as in `perfpack-record` (`perfpack_schema::units`).
pub use perfpack_schema::units::parse_duration_ns;

/// Parses `--from`/`--to`: a relative duration, an RFC 3339 time, or a UTC time of day.
pub fn parse_time(s: &str) -> Result<TimeArg, String> {
    let t = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return dt
            .timestamp_nanos_opt()
            .map(TimeArg::Wall)
            .ok_or_else(|| format!("{s:?}: out of range"));
    }
    if t.contains(':') {
        let tod = chrono::NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
            .or_else(|_| chrono::NaiveTime::parse_from_str(t, "%H:%M"))
            .map_err(|_| {
                format!(
                    "{s:?} is not a time: use seconds from the start (12.5), RFC 3339 or HH:MM:SS"
                )
            })?;
        let ns = chrono::Timelike::num_seconds_from_midnight(&tod) as i64 * 1_000_000_000
            + chrono::Timelike::nanosecond(&tod) as i64;
        return Ok(TimeArg::TimeOfDay(ns));
    }
    parse_duration_ns(t).map(TimeArg::Relative).map_err(|_| {
        format!("{s:?} is not a time: use seconds from the start (12.5), RFC 3339 or HH:MM:SS")
    })
}

impl TimeArg {
    /// The CLOCK_MONOTONIC time of this point in `bundle`.
    pub fn mono_ns(self, bundle: &Bundle) -> i64 {
        let start = &bundle.manifest().clocks.start;
        match self {
            TimeArg::Relative(ns) => start.monotonic_ns + ns,
            TimeArg::Wall(wall) => start.monotonic_ns + (wall - start.realtime_ns),
            TimeArg::TimeOfDay(tod) => {
                let day = start.realtime_ns.div_euclid(86_400_000_000_000) * 86_400_000_000_000;
                start.monotonic_ns + (day + tod - start.realtime_ns)
            }
        }
    }
}

/// The shared selection options.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub pids: Vec<i32>,
    pub tids: Vec<i32>,
    pub comms: Vec<String>,
    pub cpus: Vec<i32>,
    pub from: Option<TimeArg>,
    pub to: Option<TimeArg>,
    /// A SQL predicate over the rows the picture is drawn from.
    pub predicate: Option<String>,
    /// Cgroup patterns (globs on the path, or on its last component or container id).
    pub cgroups: Vec<String>,
}

/// A SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn in_list<T: ToString>(col: &str, values: &[T]) -> Option<String> {
    (!values.is_empty()).then(|| {
        let list: Vec<String> = values.iter().map(ToString::to_string).collect();
        format!("{col} IN ({})", list.join(", "))
    })
}

impl Scope {
    /// Whether any option narrows the selection.
    pub fn is_everything(&self) -> bool {
        self.pids.is_empty()
            && self.tids.is_empty()
            && self.comms.is_empty()
            && self.cpus.is_empty()
            && self.from.is_none()
            && self.to.is_none()
            && self.predicate.is_none()
            && self.cgroups.is_empty()
    }

    /// The SQL predicate over a relation with columns `bundle`, `ts_ns`, `pid`, `tid`, `comm`
    /// and `cpu` (those the options use), or `TRUE`.
    pub fn sql(&self, bundles: &[Bundle], names: &[BundleName]) -> anyhow::Result<String> {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(in_list("pid", &self.pids));
        parts.extend(in_list("tid", &self.tids));
        parts.extend(in_list("cpu", &self.cpus));
        if !self.comms.is_empty() {
            let list: Vec<String> = self.comms.iter().map(|c| quote(c)).collect();
            parts.push(format!("comm IN ({})", list.join(", ")));
        }
        if self.from.is_some() || self.to.is_some() {
            let mut per_bundle = Vec::new();
            for (b, n) in bundles.iter().zip(names) {
                let from = self.from.map(|t| t.mono_ns(b));
                let to = self.to.map(|t| t.mono_ns(b));
                if let (Some(f), Some(t)) = (from, to)
                    && t <= f
                {
                    bail!(
                        "{}: --to is not after --from ({} ≤ {})",
                        b.path().display(),
                        perfpack_schema::time::format_wall_ns(b.manifest().clocks.start.wall_ns(t)),
                        perfpack_schema::time::format_wall_ns(b.manifest().clocks.start.wall_ns(f)),
                    );
                }
                let mut c = vec![format!("bundle = {}", quote(&n.bundle))];
                c.extend(from.map(|f| format!("ts_ns >= {f}")));
                c.extend(to.map(|t| format!("ts_ns < {t}")));
                per_bundle.push(format!("({})", c.join(" AND ")));
            }
            parts.push(format!("({})", per_bundle.join(" OR ")));
        }
        if !self.cgroups.is_empty() {
            if let Some(b) = bundles.iter().find(|b| {
                b.segments(perfpack_schema::tables::TASK_CGROUP)
                    .iter()
                    .all(|s| s.rows == 0)
            }) {
                bail!(
                    "{}: no cgroups recorded (a bundle from before perfpack recorded them, an \
                     import, or a kernel without PERF_SAMPLE_CGROUP): --cgroup cannot select",
                    b.path().display()
                );
            }
            parts.push(cgroup_sql(&self.cgroups));
        }
        if let Some(p) = &self.predicate {
            if p.contains(';') {
                bail!("--where takes one SQL predicate, not statements: {p:?}");
            }
            parts.push(format!("({p})"));
        }
        if parts.is_empty() {
            return Ok("TRUE".into());
        }
        Ok(parts.join(" AND "))
    }

    /// Words for a subtitle: what the options selected, e.g. `pid 1210, comm postgres`.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        let join = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        if !self.pids.is_empty() {
            parts.push(format!("pid {}", join(&self.pids)));
        }
        if !self.tids.is_empty() {
            parts.push(format!("tid {}", join(&self.tids)));
        }
        if !self.comms.is_empty() {
            parts.push(format!("comm {}", self.comms.join(",")));
        }
        if !self.cpus.is_empty() {
            parts.push(format!("cpu {}", join(&self.cpus)));
        }
        if !self.cgroups.is_empty() {
            parts.push(format!("cgroup {}", self.cgroups.join(",")));
        }
        if let Some(p) = &self.predicate {
            parts.push(format!("where {p}"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// A glob (`*`, `?`) as a SQL LIKE pattern (`%`, `_`; the pattern's own `%`, `_` and `\\`
/// escaped with `\\`, LIKE's escape).
fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `LEFT JOIN task_cgroup_span t ON …`: each row of the relation aliased `x` (with `bundle`,
/// `tid`, `ts_ns`) with its thread's cgroup at that time as `t.cgroup` (null when none).
pub fn cgroup_at(x: &str) -> String {
    format!(
        "LEFT JOIN task_cgroup_span t ON {x}.bundle = t.bundle AND {x}.tid = t.tid \
         AND {x}.ts_ns >= t.from_ns AND (t.to_ns IS NULL OR {x}.ts_ns < t.to_ns)"
    )
}

/// `--cgroup`: the rows of threads while they were in a matching cgroup (`task_cgroup_span`):
/// a thread that moved is selected for the time it spent in one. A pattern with a `/` is a glob
/// on the whole path (`/system.slice/*`); one without is a glob on the path's last component or
/// the container id, whose prefix is enough (`ssh.service`, `3f4e9a2b1c0d`, `docker-*`).
///
/// A correlated `EXISTS` over the relation's own `bundle`, `tid` and `ts_ns`: the spans'
/// columns are renamed so that those names can only mean the outer relation's.
fn cgroup_sql(patterns: &[String]) -> String {
    let matches: Vec<String> = patterns
        .iter()
        .map(|p| {
            let like = glob_to_like(p);
            if p.contains('/') {
                format!("cgroup LIKE {}", quote(&like))
            } else {
                format!(
                    "(cgroup LIKE {} OR container_id LIKE {})",
                    quote(&format!("%/{like}")),
                    quote(&format!("{like}%"))
                )
            }
        })
        .collect();
    format!(
        "EXISTS (SELECT 1 FROM (SELECT bundle AS cg_bundle, tid AS cg_tid, from_ns AS cg_from, \
         to_ns AS cg_to FROM task_cgroup_span WHERE {}) \
         WHERE cg_bundle = bundle AND cg_tid = tid AND ts_ns >= cg_from \
         AND (cg_to IS NULL OR ts_ns < cg_to))",
        matches.join(" OR ")
    )
}

/// Parses a comma-separated list option value.
pub fn parse_list<T: std::str::FromStr>(values: &[String], what: &str) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for v in values.iter().flat_map(|v| v.split(',')) {
        out.push(
            v.trim()
                .parse()
                .ok()
                .with_context(|| format!("--{what} {v:?}: not a number"))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration_ns("2.5s"), Ok(2_500_000_000));
        assert_eq!(parse_duration_ns("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("10"), Ok(10_000_000_000));
        assert_eq!(parse_duration_ns("250us"), Ok(250_000));
        assert!(parse_duration_ns("5 parsecs").is_err());
        assert_eq!(parse_time("3"), Ok(TimeArg::Relative(3_000_000_000)));
        assert_eq!(
            parse_time("10:00:05.5"),
            Ok(TimeArg::TimeOfDay(36_005_500_000_000))
        );
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z"),
            Ok(TimeArg::Wall(1_000_000_000))
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn quotes_sql_strings() {
        assert_eq!(quote("it's"), "'it''s'");
    }
}
