//! Wall-clock formatting of nanosecond timestamps (UTC, RFC 3339), without a calendar crate.

/// Formats nanoseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn format_wall_ns(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let millis = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Formats a duration in nanoseconds for people: `850 ms`, `12.3 s`, `4 min 05 s`.
pub fn format_duration_ns(ns: i64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 120_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as i64;
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_wall_ns(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-28T13:55:03.250Z
        assert_eq!(
            format_wall_ns(1_795_874_103_250_000_000),
            "2026-11-28T13:55:03.250Z"
        );
        assert_eq!(
            format_wall_ns(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(format_wall_ns(-1_000_000), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration_ns(850_000_000), "850 ms");
        assert_eq!(format_duration_ns(12_340_000_000), "12.3 s");
        assert_eq!(format_duration_ns(245_000_000_000), "4 min 05 s");
    }
}
