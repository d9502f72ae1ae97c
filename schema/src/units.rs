//! Durations and sizes as both command lines take them: one grammar, so `-d 1.5m` in
//! `perfpack-record` and `--step 1.5m` in `perfpack` mean the same, and a typo gets the same
//! answer from either.

/// Parses a duration into nanoseconds: a number with an optional unit, `ns`, `us` (`µs`),
/// `ms`, `s` (the default: `10` is ten seconds), `m` (`min`) or `h`; `2.5s`, `500ms`, `1.5m`.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult = match unit.trim() {
        "" | "s" => 1e9,
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {:?} (use ns, us, ms, s, m or h)",
                unit.trim()
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 10, 2.5s or 500ms"))?;
    let ns = n * mult;
    if !ns.is_finite() || ns >= i64::MAX as f64 {
        return Err(format!("{s:?}: too long"));
    }
    Ok(ns.round() as i64)
}

/// Parses a size in bytes: a whole number with an optional binary unit, `K`, `M`, `G` or `T`,
/// in either case and with or without `B`/`iB` (`512M`, `4g`, `64KiB`, `1000`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let upper = unit.trim().to_ascii_uppercase();
    let mult: u64 = match upper.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {:?} (use K, M, G or T)",
                unit.trim()
            ));
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size such as 512M or 4G"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("2.5s"), Ok(2_500_000_000));
        assert_eq!(parse_duration_ns("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("10"), Ok(10_000_000_000));
        assert_eq!(parse_duration_ns("250us"), Ok(250_000));
        assert_eq!(parse_duration_ns("1.5m"), Ok(90_000_000_000));
        assert_eq!(parse_duration_ns("2h"), Ok(7_200_000_000_000));
        assert_eq!(parse_duration_ns(" 7ns "), Ok(7));
        for bad in [
            "5 parsecs",
            "fast",
            "3 days",
            "",
            "s",
            "1e400",
            "9999999999999h",
        ] {
            assert!(parse_duration_ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        for bad in ["4X", "G", "", "-1", "1.5G", "99999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
