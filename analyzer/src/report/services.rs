//! The report's per-service table: CPU share, off-CPU time, and block I/O by cgroup, for
//! bundles that recorded cgroups (each thread in its cgroup at the time, `task_cgroup_span`).

use super::*;

/// `<section id="services">`, or nothing when no bundle recorded cgroups.
pub(super) async fn services_section(
    session: &Session,
    bundles: &[Bundle],
) -> anyhow::Result<String> {
    if rows_of(bundles, tables::TASK_CGROUP) == 0 {
        return Ok(String::new());
    }
    let at = crate::scope::cgroup_at("x");
    let sql = format!(
        "WITH cpu AS (
           SELECT bundle, COALESCE(cgroup, '(none)') AS g, samples, pct FROM cgroup_top
         ),
         off AS (
           SELECT x.bundle, COALESCE(t.cgroup, '(none)') AS g, SUM(x.dur_ns) AS ns
           FROM ({blocked}) x {at} GROUP BY 1, 2
         ),
         io AS (
           SELECT x.bundle, COALESCE(t.cgroup, '(none)') AS g, COUNT(*) AS n,
                  SUM(x.bytes) AS bytes, approx_percentile_cont(x.latency_ns, 0.99) AS p99
           FROM block_io x {at} GROUP BY 1, 2
         ),
         k AS (
           SELECT bundle, g FROM cpu UNION SELECT bundle, g FROM off UNION SELECT bundle, g FROM io
         )
         SELECT k.bundle, k.g, cpu.pct, cpu.samples, CAST(off.ns AS DOUBLE) / 1e9,
                io.n, io.bytes, CAST(io.p99 AS DOUBLE) / 1e6
         FROM k
         LEFT JOIN cpu ON cpu.bundle = k.bundle AND cpu.g = k.g
         LEFT JOIN off ON off.bundle = k.bundle AND off.g = k.g
         LEFT JOIN io ON io.bundle = k.bundle AND io.g = k.g
         ORDER BY k.bundle, cpu.samples DESC NULLS LAST, k.g",
        blocked = crate::analysis::blocked::BLOCKED_SQL
    );
    let rows = query_rows(session, &sql).await?;
    let mut o = String::from(
        "<section id=\"services\"><h2>Services (cgroups)</h2>\n<p class=\"note\">Each thread \
         in its cgroup at the time: CPU samples, time blocked off the CPU, and the block \
         requests it made, per cgroup (v2) path.</p>\n",
    );
    let skip = usize::from(bundles.len() == 1);
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r[skip..].to_vec()).collect();
    let head = [
        "bundle",
        "cgroup",
        "CPU %",
        "CPU samples",
        "off-CPU s",
        "block requests",
        "block bytes",
        "block p99 ms",
    ];
    o.push_str(&table(&head[skip..], &rows, "top"));
    o.push_str("</section>\n");
    Ok(o)
}
