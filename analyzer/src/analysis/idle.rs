//! Idle: one definition for every figure that leaves it out or states its share. A CPU with
//! nothing to run runs its idle task, pid 0 (`swapper/N`; ftrace text prints `<idle>`), so a
//! sample of pid 0 is an idle sample. That includes the interrupts the idle task served while
//! the CPU slept (perf report and FlameGraph also put those under `swapper`); a sample of any
//! other pid is busy, whatever its frames.

use arrow_array::cast::AsArray as _;
use arrow_array::types::Int64Type;
use futures::StreamExt as _;

use crate::sql::session::Session;

/// SQL predicate over a relation with a `pid` column: the row is idle.
pub const IDLE_SQL: &str = "pid = 0";

/// SQL predicate over a relation with a `pid` column: the row is not idle.
pub const BUSY_SQL: &str = "pid <> 0";

/// Idle and all `stack_sample` rows of `event` where `predicate` holds (`TRUE` for all).
pub async fn samples(
    session: &Session,
    event: &str,
    predicate: &str,
) -> anyhow::Result<(u64, u64)> {
    let sql = format!(
        "SELECT CAST(COUNT(*) FILTER (WHERE {IDLE_SQL}) AS BIGINT), CAST(COUNT(*) AS BIGINT) \
         FROM stack_sample WHERE event = {} AND ({predicate})",
        crate::scope::quote(event)
    );
    let mut frames = session.plan(&sql).await?;
    let df = frames.pop().expect("one statement");
    let mut stream = df.execute_stream().await.map_err(crate::sql::error)?;
    let (mut idle, mut all) = (0, 0);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(crate::sql::error)?;
        for i in 0..batch.num_rows() {
            idle += batch.column(0).as_primitive::<Int64Type>().value(i) as u64;
            all += batch.column(1).as_primitive::<Int64Type>().value(i) as u64;
        }
    }
    Ok((idle, all))
}

/// Words for a subtitle: the idle share of `all` samples.
pub fn describe_share(idle: u64, all: u64, hidden: bool) -> String {
    let pct = if all == 0 {
        0.0
    } else {
        100.0 * idle as f64 / all as f64
    };
    format!(
        "idle (pid 0): {pct:.1}% of samples{}",
        if hidden { ", hidden" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_said_in_one_way() {
        assert_eq!(
            describe_share(3, 4, true),
            "idle (pid 0): 75.0% of samples, hidden"
        );
        assert_eq!(describe_share(0, 0, false), "idle (pid 0): 0.0% of samples");
    }
}
