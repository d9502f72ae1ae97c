//! CPU samples folded per time bucket, for pictures that let the reader pick a time range (the
//! report's heat maps): the same stacks as the flame graph, with when they were sampled.

use arrow_array::Array as _;
use arrow_array::cast::AsArray as _;
use perfpack_schema::Bundle;
use perfpack_schema::fxhash::{FxHashMap, FxHashSet};

use super::{Folder, i64_col, str_col, trees};
use crate::picture::{self, Progress};
use crate::scope::quote;
use crate::sql::Session;

/// Folded stacks of one event with their weight per time bucket.
#[derive(Debug, Default)]
pub struct Timed {
    /// Stack id → folded line (`comm;root;...;leaf`, annotated `_[k]`/`_[j]`), sorted.
    pub lines: Vec<String>,
    /// Width of a bucket, ns: bucket b covers [b·bucket_ns, (b+1)·bucket_ns) after the origin.
    pub bucket_ns: i64,
    /// (bucket, stack id, summed weight, samples), sorted by bucket then stack.
    pub cells: Vec<(i64, u32, u64, u64)>,
    /// Stack id → whether its samples are idle (`analysis::idle`).
    pub idle: Vec<bool>,
}

impl Timed {
    /// Samples of idle stacks (`analysis::idle`) and of all stacks.
    pub fn samples(&self) -> (u64, u64) {
        self.cells.iter().fold((0, 0), |(idle, all), c| {
            let is_idle = self.idle.get(c.1 as usize) == Some(&true);
            (idle + if is_idle { c.3 } else { 0 }, all + c.3)
        })
    }
}

/// Folds the samples of `event` by `bucket_ns` buckets measured from `origin`, then
/// doubles the bucket width until at most `max_cells` (bucket, stack) pairs remain.
pub async fn timed(
    session: &Session,
    bundles: &[Bundle],
    event: &str,
    predicate: &str,
    origin: &crate::analysis::time::Origin,
    bucket_ns: i64,
    max_cells: usize,
) -> anyhow::Result<Timed> {
    let names = session.names();
    let index = picture::bundle_index(names);
    let zero_expr = origin.zero_sql(names);
    let sql = format!(
        "SELECT bundle, comm, callsite_id, CAST(FLOOR(CAST(ts_ns - {zero_expr} AS DOUBLE) / {bucket_ns}) AS BIGINT) AS b, \
         SUM(weight), COUNT(*), {} AS idle FROM stack_sample WHERE event = {} AND ({predicate}) \
         GROUP BY 1, 2, 3, 4, 7",
        crate::analysis::idle::IDLE_SQL,
        quote(event)
    );
    let trees = trees(bundles)?;
    let mut folder = Folder::new(bundles, &trees, true);
    let mut by_key: FxHashMap<(i64, super::StackKey), (u64, u64)> = FxHashMap::default();
    let mut idle_keys: FxHashSet<super::StackKey> = FxHashSet::default();
    picture::stream(session, &sql, &Progress::hidden(), |b| {
        let (bundle, comms) = (str_col(b, 0), str_col(b, 1));
        let (leaves, buckets, sums, counts) =
            (i64_col(b, 2), i64_col(b, 3), i64_col(b, 4), i64_col(b, 5));
        let idle = b.column(6).as_boolean();
        for i in 0..b.num_rows() {
            let bi = index[bundle.value(i)];
            let leaf = (!leaves.is_null(i)).then(|| leaves.value(i));
            let key = folder.key(bi, comms.value(i), leaf)?;
            if idle.value(i) {
                idle_keys.insert(key);
            }
            let e = by_key.entry((buckets.value(i), key)).or_default();
            e.0 += sums.value(i).max(0) as u64;
            e.1 += counts.value(i) as u64;
        }
        Ok(())
    })
    .await?;
    // Keys that fold to the same line share a stack id; ids follow the sorted lines.
    let mut line_of: FxHashMap<super::StackKey, String> = FxHashMap::default();
    for (_, key) in by_key.keys() {
        line_of.entry(*key).or_insert_with(|| folder.line(*key));
    }
    let mut lines: Vec<String> = line_of.values().cloned().collect();
    lines.sort_unstable();
    lines.dedup();
    let id_of: FxHashMap<&str, u32> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let mut idle = vec![false; lines.len()];
    for key in &idle_keys {
        idle[id_of[line_of[key].as_str()] as usize] = true;
    }
    let mut cells: FxHashMap<(i64, u32), (u64, u64)> = FxHashMap::default();
    for ((b, key), (w, n)) in by_key {
        let e = cells.entry((b, id_of[line_of[&key].as_str()])).or_default();
        e.0 += w;
        e.1 += n;
    }
    let mut bucket_ns = bucket_ns;
    while cells.len() > max_cells {
        bucket_ns *= 2;
        let old = std::mem::take(&mut cells);
        for ((b, s), (w, n)) in old {
            let e = cells.entry((b.div_euclid(2), s)).or_default();
            e.0 += w;
            e.1 += n;
        }
    }
    let mut cells: Vec<(i64, u32, u64, u64)> = cells
        .into_iter()
        .map(|((b, s), (w, n))| (b, s, w, n))
        .collect();
    cells.sort_unstable();
    Ok(Timed {
        lines,
        bucket_ns,
        cells,
        idle,
    })
}
