//! `perfpack cluster`: run a node of a Ballista cluster that `perfpack sql --cluster` uses.

use crate::cluster::{ExecutorOptions, SchedulerOptions};

/// Which node to run.
#[derive(Debug)]
pub enum Node {
    Scheduler(SchedulerOptions),
    Executor(ExecutorOptions),
}

pub fn run(node: Node) -> anyhow::Result<()> {
    crate::sql::runtime()?.block_on(async {
        match node {
            Node::Scheduler(o) => crate::cluster::run_scheduler(o).await,
            Node::Executor(o) => crate::cluster::run_executor(o).await,
        }
    })
}
