//! The CPU and off-CPU sections: flame graph data, top processes and functions.

use super::*;
use perfpack_schema::manifest::sources;

/// CPU flame graph (range-selectable), top processes and functions.
pub(super) async fn cpu_section(
    session: &Session,
    bundles: &[Bundle],
    origin: &Origin,
    predicate: &str,
) -> anyhow::Result<String> {
    let mut o = String::from("<section id=\"cpu\"><h2>CPU</h2>\n");
    // CPU samples only: switch-outs and other events are not CPU time.
    let Some(event) = crate::analysis::cpu::cpu_event(session).await? else {
        o.push_str(&unavailable(
            bundles,
            "CPU samples",
            &[sources::PERF_SAMPLES],
        ));
        o.push_str("</section>\n");
        return Ok(o);
    };
    let timed = flamegraph::timed(
        session,
        bundles,
        &event,
        predicate,
        origin,
        FINEST_BUCKET_NS,
        MAX_TIMED_CELLS,
    )
    .await?;
    let (idle_samples, samples) = timed.samples();
    let data = flame::Data::timed(&timed);
    let unit = if crate::analysis::cpu::is_clock_event(&event) {
        "ns".to_string()
    } else {
        event.clone()
    };
    let names = crate::sql::session::bundle_names(bundles);
    let sub = [
        picture::describe_bundles(&names),
        format!("{} {event} samples", picture::group_digits(samples)),
        picture::describe_losses(bundles, &[sources::PERF_SAMPLES]),
        crate::analysis::idle::describe_share(idle_samples, samples, data.hides_idle()),
        format!("time ranges snap to {} buckets", human_ns(timed.bucket_ns)),
    ]
    .join(" · ");
    o.push_str(&flame::html(
        "fg-cpu",
        "CPU flame graph",
        &sub,
        &unit,
        &data,
    ));
    // Top processes: the `top_processes` view, or the same over the selected samples.
    let processes = if predicate == "TRUE" {
        "top_processes".to_string()
    } else {
        format!(
            "(WITH p AS (SELECT bundle, pid, comm, COUNT(*) AS n, SUM(weight) AS w \
             FROM cpu_sample WHERE {predicate} GROUP BY bundle, pid, comm), \
             r AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY bundle, pid ORDER BY n DESC, comm) \
             AS rank FROM p) \
             SELECT bundle, pid, MAX(CASE WHEN rank = 1 THEN comm END) AS comm, SUM(n) AS samples, \
             100.0 * SUM(n) / SUM(SUM(n)) OVER (PARTITION BY bundle) AS pct, SUM(w) AS weight \
             FROM r GROUP BY bundle, pid)"
        )
    };
    let rows = query_rows(
        session,
        &format!(
            "SELECT bundle, pid, comm, samples, pct, weight FROM (SELECT *, ROW_NUMBER() OVER \
             (PARTITION BY bundle ORDER BY samples DESC, pid) AS r FROM {processes}) WHERE r <= 15 \
             ORDER BY bundle, samples DESC, pid"
        ),
    )
    .await?;
    o.push_str("<div class=\"tops\"><div><h3>Top processes</h3>\n");
    let skip = usize::from(bundles.len() == 1);
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r[skip..].to_vec()).collect();
    let head = ["bundle", "pid", "comm", "samples", "%", "weight"];
    o.push_str(&table(&head[skip..], &rows, "top"));
    o.push_str("</div><div><h3>Top functions</h3>\n");
    o.push_str(&table(
        &["function", "self %", "total %"],
        &top_functions(&timed, 20),
        "top",
    ));
    o.push_str("</div></div>\n</section>\n");
    Ok(o)
}

/// A flame graph of each other event sampled with stacks (`--stack-event`, an imported
/// capture's page faults or tracepoints): every event but the CPU event and the switch-outs,
/// which the CPU and off-CPU sections draw.
pub(super) async fn event_sections(
    session: &Session,
    bundles: &[Bundle],
    origin: &Origin,
    predicate: &str,
) -> anyhow::Result<String> {
    let cpu = crate::analysis::cpu::cpu_event(session).await?;
    let events = query_rows(
        session,
        "SELECT event FROM stack_sample GROUP BY event ORDER BY event",
    )
    .await?;
    let names = crate::sql::session::bundle_names(bundles);
    let mut o = String::new();
    for (i, event) in events.iter().filter_map(|r| r.first()).enumerate() {
        if Some(event) == cpu.as_ref() || event == crate::flamegraph::SWITCH_EVENT {
            continue;
        }
        let timed = flamegraph::timed(
            session,
            bundles,
            event,
            predicate,
            origin,
            FINEST_BUCKET_NS,
            MAX_TIMED_CELLS,
        )
        .await?;
        let (_, samples) = timed.samples();
        let title = flamegraph::title_of(event);
        let sub = [
            picture::describe_bundles(&names),
            format!("{} {event} samples", picture::group_digits(samples)),
            picture::describe_losses(bundles, &[sources::PERF_SAMPLES]),
        ]
        .join(" · ");
        let _ = writeln!(o, "<section id=\"event-{i}\"><h2>{}</h2>", h(&title));
        o.push_str(&flame::html(
            &format!("fg-event-{i}"),
            &title,
            &sub,
            event,
            &flame::Data::timed(&timed),
        ));
        o.push_str("</section>\n");
    }
    Ok(o)
}

/// The functions with the most self (leaf) weight, with their total (anywhere on the stack).
pub(super) fn top_functions(timed: &flamegraph::Timed, n: usize) -> Vec<Vec<String>> {
    let mut per_stack = vec![0u64; timed.lines.len()];
    for c in &timed.cells {
        per_stack[c.1 as usize] += c.2;
    }
    let all: u64 = per_stack.iter().sum();
    let mut own: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for (line, &w) in timed.lines.iter().zip(&per_stack) {
        let frames: Vec<&str> = line.split(';').skip(1).collect();
        if let Some(leaf) = frames.last() {
            own.entry(leaf).or_default().0 += w;
        }
        let mut seen: Vec<&str> = frames.clone();
        seen.sort_unstable();
        seen.dedup();
        for f in seen {
            own.entry(f).or_default().1 += w;
        }
    }
    let mut v: Vec<(&str, u64, u64)> = own.into_iter().map(|(f, (s, t))| (f, s, t)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
    let pct = |x: u64| format!("{:.2}", 100.0 * x as f64 / all.max(1) as f64);
    v.into_iter()
        .filter(|x| x.1 > 0)
        .take(n)
        .map(|(f, s, t)| vec![f.to_string(), pct(s), pct(t)])
        .collect()
}

/// Off-CPU flame graph, where context switches were recorded.
pub(super) async fn offcpu_section(
    session: &Session,
    bundles: &[Bundle],
    scope: &Scope,
) -> anyhow::Result<String> {
    let mut o = String::from("<section id=\"offcpu\"><h2>Off-CPU</h2>\n");
    if rows_of(bundles, tables::SCHED_SWITCH) == 0 {
        o.push_str(&unavailable(
            bundles,
            "context switches",
            &[sources::FTRACE],
        ));
        o.push_str("</section>\n");
        return Ok(o);
    }
    let opts = flamegraph::Options {
        kind: Kind::Offcpu,
        folded: false,
        wakers: true,
        scope: scope.clone(),
        ..flamegraph::Options::folded_cpu(flamegraph::Weight::Ns)
    };
    let folded = match flamegraph::collect(session, bundles, &opts, &Progress::hidden()).await {
        Ok(f) => f,
        // A selection whose threads never blocked (a CPU loop): said, not a failed report.
        Err(e) if !scope.is_everything() => {
            let _ = writeln!(
                o,
                "<p class=\"note\">{}.</p>",
                h(&capitalized(&e.to_string()))
            );
            o.push_str("</section>\n");
            return Ok(o);
        }
        Err(e) => return Err(e),
    };
    if folded.lines.values().all(|&w| w == 0) {
        o.push_str("<p class=\"note\">No thread blocked off the CPU in the capture.</p>\n");
    } else {
        let names = crate::sql::session::bundle_names(bundles);
        let sub = flamegraph::subtitle(bundles, &names, &opts, &folded);
        o.push_str(&flame::html(
            "fg-offcpu",
            "Off-CPU flame graph (time blocked; wakers stacked above --)",
            &sub,
            &folded.unit,
            &flame::Data::folded(&folded.lines),
        ));
    }
    o.push_str("</section>\n");
    Ok(o)
}
