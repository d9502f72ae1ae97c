//! The frequency section: busy MHz, busy % and temperature over time.

use super::*;
use perfpack_schema::manifest::sources;

/// Busy MHz, busy % and temperature per second, averaged over CPUs.
pub(super) async fn frequency_section(
    session: &Session,
    bundles: &[Bundle],
    origin: &Origin,
) -> anyhow::Result<String> {
    let mut o = String::from("<section id=\"frequency\"><h2>Frequency</h2>\n");
    let names = crate::sql::session::bundle_names(bundles);
    let index = picture::bundle_index(&names);
    // (bundle, second) → sums of (busy MHz, busy %, n, temperature °C, n).
    type Acc = std::collections::BTreeMap<(usize, i64), [f64; 5]>;
    let mut acc: Acc = Default::default();
    let mut sources: Vec<String> = Vec::new();
    picture::stream(
        session,
        "SELECT bundle, ts_ns, bzy_mhz, busy_pct, source FROM cpu_frequency WHERE bzy_mhz IS NOT NULL",
        &Progress::hidden(),
        |b| {
            let bundle = b.column(0).as_string::<i32>();
            let ts = b.column(1).as_primitive::<Int64Type>();
            let mhz = b.column(2).as_primitive::<Float64Type>();
            let busy = b.column(3).as_primitive::<Float64Type>();
            let src = b.column(4).as_string::<i32>();
            for i in 0..b.num_rows() {
                let bi = index[bundle.value(i)];
                let sec = (ts.value(i) - origin.zero[bi]).div_euclid(1_000_000_000);
                let e = acc.entry((bi, sec)).or_default();
                e[0] += mhz.value(i);
                if !busy.is_null(i) {
                    e[1] += busy.value(i);
                }
                e[2] += 1.0;
                if !sources.iter().any(|s| s == src.value(i)) {
                    sources.push(src.value(i).to_string());
                }
            }
            Ok(())
        },
    )
    .await?;
    // Temperature (Intel's registers; AMD's is not an MSR, and the recorder reads none there).
    let mut tjmax: std::collections::HashMap<(usize, i32), u64> = Default::default();
    let mut readings: Vec<(usize, i64, i32, u64)> = Vec::new();
    picture::stream(
        session,
        "SELECT bundle, ts_ns, cpu, name, value FROM msr WHERE name IN ('THERM_STATUS', 'TEMPERATURE_TARGET') ORDER BY ts_ns",
        &Progress::hidden(),
        |b| {
            let bundle = b.column(0).as_string::<i32>();
            let ts = b.column(1).as_primitive::<Int64Type>();
            let cpu = b.column(2).as_primitive::<arrow_array::types::Int32Type>();
            let name = b.column(3).as_string::<i32>();
            let value = b.column(4).as_primitive::<UInt64Type>();
            for i in 0..b.num_rows() {
                let bi = index[bundle.value(i)];
                if name.value(i) == "TEMPERATURE_TARGET" {
                    tjmax.insert((bi, cpu.value(i)), value.value(i));
                } else {
                    readings.push((bi, ts.value(i), cpu.value(i), value.value(i)));
                }
            }
            Ok(())
        },
    )
    .await?;
    for (bi, ts, cpu, v) in readings {
        if let Some(c) = tjmax.get(&(bi, cpu)).and_then(|&tj| celsius(v, tj)) {
            let sec = (ts - origin.zero[bi]).div_euclid(1_000_000_000);
            let e = acc.entry((bi, sec)).or_default();
            e[3] += c;
            e[4] += 1.0;
        }
    }
    if acc.is_empty() {
        o.push_str(&unavailable(
            bundles,
            "frequency (APERF/MPERF, cpufreq)",
            &[sources::MSR],
        ));
        o.push_str("</section>\n");
        return Ok(o);
    }
    let series = |k: usize, n: usize| -> Vec<(usize, Vec<(f64, f64)>)> {
        (0..bundles.len())
            .map(|bi| {
                let pts = acc
                    .range((bi, i64::MIN)..=(bi, i64::MAX))
                    .filter(|(_, v)| v[n] > 0.0)
                    .map(|(&(_, s), v)| (s as f64 + 0.5, v[k] / v[n]))
                    .collect();
                (bi, pts)
            })
            .filter(|(_, p): &(usize, Vec<(f64, f64)>)| !p.is_empty())
            .collect()
    };
    let label = |bi: usize| names[bi].bundle.clone();
    let _ = writeln!(
        o,
        "<p>Averaged over CPUs per second ({}; source: {}).</p>",
        h(&origin.describe()),
        h(&sources.join(", "))
    );
    o.push_str(&line_chart("busy MHz", &series(0, 2), &label));
    o.push_str(&line_chart("busy %", &series(1, 2), &label));
    let temp = series(3, 4);
    if temp.is_empty() {
        o.push_str("<p class=\"note\">Temperature: not in the bundle(s) (needs THERM_STATUS and TEMPERATURE_TARGET MSRs).</p>\n");
    } else {
        o.push_str(&line_chart("temperature °C", &temp, &label));
    }
    o.push_str("</section>\n");
    Ok(o)
}

/// A core's temperature, °C, from Intel's registers: TjMax (`TEMPERATURE_TARGET` bits 23:16)
/// minus the digital readout (`THERM_STATUS` bits 22:16), which is valid only when bit 31 is
/// set; `None` otherwise, or for a TjMax of 0 (not reported).
pub(super) fn celsius(therm_status: u64, temperature_target: u64) -> Option<f64> {
    let tjmax = (temperature_target >> 16) & 0xff;
    (therm_status >> 31 & 1 == 1 && tjmax > 0)
        .then_some(tjmax as f64 - ((therm_status >> 16) & 0x7f) as f64)
}

/// A small SVG line chart: x = seconds, one line per bundle.
pub(super) fn line_chart(
    what: &str,
    series: &[(usize, Vec<(f64, f64)>)],
    label: &dyn Fn(usize) -> String,
) -> String {
    const COLOURS: [&str; 6] = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    // 5% of the range (at least 1) above and below, not below zero.
    let pad = ((y1 - y0) * 0.05).max(1.0);
    let (y0, y1) = ((y0 - pad).max(0.0), y1 + pad);
    let (left, top, pw, ph) = (70.0, 10.0, 1000.0, 140.0);
    let mut o = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption><svg width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" xmlns=\"http://www.w3.org/2000/svg\">\n",
        h(what),
        px(left + pw + 20.0),
        px(top + ph + 30.0),
        px(left + pw + 20.0),
        px(top + ph + 30.0)
    );
    let _ = writeln!(
        o,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fff\" stroke=\"#bbb\"/>",
        px(left),
        px(top),
        px(pw),
        px(ph)
    );
    // Enough decimals that the five labels differ.
    let digits = if y1 - y0 < 8.0 { 1 } else { 0 };
    for k in 0..=4 {
        let v = y0 + (y1 - y0) * k as f64 / 4.0;
        let y = top + ph - ph * k as f64 / 4.0;
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{v:.digits$}</text>",
            px(left - 5.0),
            px(y + 4.0),
        );
    }
    let tick = svg::nice_step((x1.ceil() as i64).max(1) * 1_000_000_000, 10) as f64 / 1e9;
    let mut t = 0.0;
    while t <= x1 {
        let x = left + t / x1 * pw;
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            px(x),
            px(top + ph + 16.0),
            h(&human_ns((t * 1e9) as i64))
        );
        t += tick.max(1.0);
    }
    for (k, (bi, points)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let d: Vec<String> = points
            .iter()
            .map(|&(x, y)| {
                format!(
                    "{},{}",
                    px(left + x / x1 * pw),
                    px(top + ph - (y - y0) / (y1 - y0) * ph)
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline>",
            d.join(" "),
            h(&label(*bi))
        );
        if series.len() > 1 {
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{colour}\">{}</text>",
                px(left + 8.0),
                px(top + 14.0 + 13.0 * k as f64),
                h(&label(*bi))
            );
        }
    }
    o.push_str("</svg></figure>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::celsius;

    #[test]
    fn temperature_is_tjmax_minus_the_valid_readout() {
        // TjMax 100 °C (0x64 in bits 23:16), readout 0x39 = 57 below it: 43 °C.
        assert_eq!(celsius(0x8839_0000, 0x0064_0000), Some(43.0));
        // TjMax 105 °C with an offset in bits 29:24 (not applied to the readout, as
        // coretemp does not), readout 0 (at TjMax).
        assert_eq!(celsius(0x8800_0000, 0x0569_0000), Some(105.0));
        // Bit 31 clear: the readout is not valid.
        assert_eq!(celsius(0x0839_0000, 0x0064_0000), None);
        // No TjMax reported.
        assert_eq!(celsius(0x8839_0000, 0), None);
    }
}
