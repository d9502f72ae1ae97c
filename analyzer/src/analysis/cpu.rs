//! What a CPU figure counts: one definition of a bundle's CPU event. `stack_sample` holds
//! other events beside it (`sched:sched_switch` switch-outs weighing 1 each, imported page
//! faults or tracepoints), and counting every row counts blocked time and events as CPU time.

use arrow_array::cast::AsArray as _;
use futures::StreamExt as _;

use crate::sql::session::Session;

/// Sampled events whose samples stand for CPU time, in order of preference: a bundle's CPU
/// event is the first of these it sampled. The `cpu_event` view (`queries/stack/cpu.sql`)
/// lists the same, in the same order (a test checks).
pub const CPU_EVENTS: [&str; 4] = ["cpu-clock", "task-clock", "cycles", "cpu-cycles"];

/// The CPU events whose sample weights are nanoseconds of CPU time.
pub const CLOCK_EVENTS: [&str; 2] = ["cpu-clock", "task-clock"];

/// Whether `event` is a clock, its sample weights nanoseconds.
pub fn is_clock_event(event: &str) -> bool {
    CLOCK_EVENTS.contains(&event)
}

/// The CPU event among these sampled events: the first of [`CPU_EVENTS`] among them.
pub fn pick<'a>(sampled: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    sampled
        .into_iter()
        .filter_map(|e| CPU_EVENTS.iter().position(|c| *c == e).map(|i| (i, e)))
        .min()
        .map(|(_, e)| e)
}

/// The CPU event of the session's bundles: the one [`pick`] chooses among the events any of
/// them sampled; `None` when none sampled a CPU event.
pub async fn cpu_event(session: &Session) -> anyhow::Result<Option<String>> {
    let sampled = sampled_events(session).await?;
    Ok(pick(sampled.iter().map(String::as_str)).map(str::to_string))
}

/// The events the session's bundles sampled with stacks, sorted.
pub async fn sampled_events(session: &Session) -> anyhow::Result<Vec<String>> {
    let mut frames = session
        .plan("SELECT DISTINCT event FROM stack_sample ORDER BY event")
        .await?;
    let df = frames.pop().expect("one statement");
    let mut stream = df.execute_stream().await.map_err(crate::sql::error)?;
    let mut sampled = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(crate::sql::error)?;
        let events = batch.column(0).as_string::<i32>();
        sampled.extend(events.iter().flatten().map(str::to_string));
    }
    // Batches from several partitions: sorted here, not by the engine's merge.
    sampled.sort();
    Ok(sampled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_first_cpu_event_sampled_and_never_a_tracepoint() {
        assert_eq!(pick(["sched:sched_switch", "cpu-clock"]), Some("cpu-clock"));
        assert_eq!(pick(["cycles", "task-clock"]), Some("task-clock"));
        assert_eq!(pick(["page-faults", "sched:sched_switch"]), None);
        assert!(is_clock_event("task-clock") && !is_clock_event("cycles"));
    }

    /// The `cpu_event` view names the same events in the same order.
    #[test]
    fn the_cpu_event_view_lists_the_same_events() {
        let view = crate::sql::library::find("cpu_event").expect("cpu_event view");
        let listed = format!("IN ({})", CPU_EVENTS.map(|e| format!("'{e}'")).join(", "));
        assert!(view.sql.contains(&listed), "{}", view.sql);
        let mut at = 0;
        for e in &CPU_EVENTS[..3] {
            let i = view.sql[at..]
                .find(&format!("WHEN '{e}'"))
                .unwrap_or_else(|| panic!("{e} out of order in {}", view.sql));
            at += i;
        }
    }
}
