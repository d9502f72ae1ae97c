//! The heat-map section: the sub-second map, utilization maps, latency maps, histograms and
//! what moves with each latency.

use super::*;
use perfpack_schema::manifest::sources;

/// The sub-second heat map of samples and the latency heat maps with their histograms.
pub(super) async fn latency_section(
    session: &Session,
    bundles: &[Bundle],
    origin: &Origin,
    scope: &Scope,
    predicate: &str,
) -> anyhow::Result<String> {
    let mut o = String::from(
        "<section id=\"latency\"><h2>Heat maps and latency</h2>\n<p>Drag across a heat map (or click one \
         cell, then another) to draw the CPU flame graph of that time range above; \
         <a href=\"#cpu\">jump to it</a>.</p>\n",
    );
    let names = crate::sql::session::bundle_names(bundles);
    if rows_of(bundles, tables::STACK_SAMPLE) > 0 {
        let cells = heatmap::bin(
            session,
            &heatmap::source_query(heatmap::Source::Samples, predicate),
            Rows::Offset {
                height: 1_000_000_000 / OFFSET_ROWS as i64,
                n: OFFSET_ROWS,
            },
            1_000_000_000,
            origin,
            &Progress::hidden(),
        )
        .await?;
        let sub = format!(
            "{} · {} · {} samples",
            picture::describe_bundles(&names),
            origin.describe(),
            picture::group_digits(cells.events)
        );
        o.push_str("<h3>CPU samples: sub-second offset heat map</h3>\n");
        o.push_str(&heat_div(
            "offset",
            &crate::render::heatmap::render(
                &cells,
                "Sub-second Offset Heat Map",
                &sub,
                "samples",
                true,
            ),
        ));
    }
    // Utilization beside latency: every CPU, and the busiest processes.
    if rows_of(bundles, tables::SYS_COUNTER) > 0 {
        let u = crate::utilization::cpus(session, origin, 1_000_000_000).await?;
        o.push_str(&utilization_block(
            "CPU utilization",
            "CPU Utilization Heat Map",
            &u,
            &names,
            origin,
            "busy % per CPU per second (procfs)",
        ));
    }
    if rows_of(bundles, tables::STACK_SAMPLE) > 0
        && let Ok(event) = heatmap::clock_event(session).await
    {
        let u = crate::utilization::processes(
            session,
            bundles,
            origin,
            1_000_000_000,
            15,
            &event,
            predicate,
        )
        .await?;
        o.push_str(&utilization_block(
            "Process CPU",
            "Process CPU Heat Map",
            &u,
            &names,
            origin,
            &format!("% of one CPU per second, the 15 busiest processes ({event} samples)"),
        ));
    }
    for (source, rows_table, lsource) in [
        (
            heatmap::Source::Block,
            tables::BLOCK_RQ,
            latency::Source::Block,
        ),
        (
            heatmap::Source::Runq,
            tables::SCHED_SWITCH,
            latency::Source::Runq,
        ),
        (
            heatmap::Source::Syscall,
            tables::SYSCALL,
            latency::Source::Syscall,
        ),
    ] {
        let what = lsource.what();
        let _ = writeln!(o, "<h3>{}</h3>", h(&capitalized(what)));
        if rows_of(bundles, rows_table) == 0 {
            o.push_str(&unavailable(bundles, what, &[sources::FTRACE]));
            continue;
        }
        let step = svg::nice_step(origin.span.max(1), 200).max(1_000_000);
        let cells = heatmap::bin(
            session,
            &heatmap::source_query(source, predicate),
            Rows::Log2,
            step,
            origin,
            &Progress::hidden(),
        )
        .await?;
        if cells.events == 0 {
            let _ = writeln!(
                o,
                "<p class=\"note\">No complete {} in the capture.</p>",
                h(lsource.noun())
            );
            continue;
        }
        let losses = picture::describe_losses(bundles, lsource.manifest_sources());
        let sub = format!(
            "{} · {} · {} {} · {losses}",
            picture::describe_bundles(&names),
            origin.describe(),
            picture::group_digits(cells.events),
            lsource.noun()
        );
        o.push_str(&heat_div(
            "time",
            &crate::render::heatmap::render(
                &cells,
                &format!("Latency Heat Map: {what}"),
                &sub,
                lsource.noun(),
                false,
            ),
        ));
        if let Some(values) = latency::scoped_values(session, bundles, lsource, scope).await? {
            let g = Group::from_values("all".into(), values);
            o.push_str(&table(
                &["count", "mean", "p50", "p90", "p99", "p99.9", "max"],
                &[vec![
                    g.count.to_string(),
                    human_ns(g.mean_ns.round() as i64),
                    human_ns(g.p50_ns),
                    human_ns(g.p90_ns),
                    human_ns(g.p99_ns),
                    human_ns(g.p999_ns),
                    human_ns(g.max_ns),
                ]],
                "percentiles",
            ));
            let svg = crate::render::latency::render_svg(
                std::slice::from_ref(&g),
                lsource,
                &format!("Histogram: {what}"),
                &sub,
            );
            o.push_str(crate::svg::strip_prolog(&svg));
            o.push('\n');
        }
        let c = crate::correlate::correlations(session, bundles, origin, lsource).await?;
        if !c.ranked.is_empty() {
            let _ = writeln!(
                o,
                "<h4>What moves with it</h4>\n<p class=\"note\">{}; Spearman's rho of per-second series.</p>",
                h(&capitalized(c.note))
            );
            let (head, rows) = crate::render::correlate::ranked_table(&c, 10);
            o.push_str(&table(&head, &rows, "correlation"));
        }
        if !c.demand.is_empty() {
            o.push_str("<p>Little's law per disk: requests in service = mean latency × completions per second.</p>\n");
            let (head, rows) = crate::render::correlate::demand_table(&c);
            o.push_str(&table(&head, &rows, "demand"));
        }
    }
    o.push_str("</section>\n");
    Ok(o)
}

/// A heat map the page's script can select time ranges on (`kind`: `time` or `offset`); the
/// selection redraws the CPU flame graph.
pub(super) fn heat_div(kind: &str, svg: &str) -> String {
    format!(
        "<div class=\"heat\" data-kind=\"{kind}\" data-target=\"fg-cpu\">{}</div>\n",
        crate::svg::strip_prolog(svg)
    )
}

/// A utilization heat map under its heading, when it has cells.
pub(super) fn utilization_block(
    heading: &str,
    title: &str,
    u: &crate::utilization::Util,
    names: &[crate::sql::session::BundleName],
    origin: &Origin,
    what: &str,
) -> String {
    if u.is_empty() {
        return String::new();
    }
    let sub = format!(
        "{} · {} · {what}",
        picture::describe_bundles(names),
        origin.describe()
    );
    format!(
        "<h3>{}</h3>\n{}",
        h(heading),
        heat_div("time", &crate::render::utilization::render(u, title, &sub))
    )
}
