//! Interns imported stacks into the bundle's stack representation: frames by (name, module),
//! the callsite prefix tree, threads by (pid, tid, comm), and one `stack_sample` row per sample.
//! Dictionary rows are written in the segment where they first appear, as the recorder does.

use perfpack_schema::BundleWriter;
use perfpack_schema::fxhash::FxHashMap;
use perfpack_schema::tables::{
    self, Callsite, CallsiteBuilder, Frame, FrameBuilder, StackSample, StackSampleBuilder, Thread,
    ThreadBuilder,
};

use super::SEGMENT_ROWS;

/// A frame as a text capture names it.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub name: &'a str,
    /// Module path as printed, `None` when the capture says `[unknown]`.
    pub module: Option<&'a str>,
    /// Whether the address is a kernel address.
    pub kernel: bool,
}

/// A sample to add.
#[derive(Debug)]
pub struct SampleRef<'a> {
    pub ts_ns: i64,
    pub cpu: i32,
    pub pid: i32,
    pub tid: i32,
    pub comm: &'a str,
    pub event: &'a str,
    pub weight: i64,
    /// How the user stack was obtained (`dwarf`, `mixed`, `fp`), when the importer unwound it.
    pub unwind: Option<&'a str>,
    /// Whether that walk stopped before the outermost frame.
    pub truncated: Option<bool>,
}

#[derive(Debug, Default)]
pub struct StackSink {
    /// Frame ids by `name \0 module` (a reusable buffer makes the lookup allocation-free).
    frames: FxHashMap<String, i64>,
    key: String,
    callsites: FxHashMap<(Option<i64>, i64), i64>,
    threads: FxHashMap<(i32, i32), String>,
    frame_rows: FrameBuilder,
    callsite_rows: CallsiteBuilder,
    thread_rows: ThreadBuilder,
    sample_rows: StackSampleBuilder,
}

impl StackSink {
    /// The id of a frame, added to the `frame` table the first time it is seen.
    pub fn frame_id(&mut self, f: FrameRef<'_>) -> i64 {
        self.key.clear();
        self.key.push_str(f.name);
        if let Some(m) = f.module {
            self.key.push('\0');
            self.key.push_str(m);
        }
        if let Some(&id) = self.frames.get(self.key.as_str()) {
            return id;
        }
        let id = self.frames.len() as i64;
        let kind = if f.kernel {
            "kernel"
        } else if f.module.is_none() {
            "unknown"
        } else {
            "user"
        };
        self.frame_rows.push(&Frame {
            frame_id: id,
            name: f.name,
            module: f.module,
            build_id: None,
            rel_pc: None,
            kind,
            file: None,
            line: None,
        });
        self.frames.insert(self.key.clone(), id);
        id
    }

    /// Adds one sample whose stack is given as frame ids, leaf first (as `perf script` prints
    /// it).
    pub fn add(
        &mut self,
        sample: &SampleRef<'_>,
        leaf_first: &[i64],
        writer: &mut BundleWriter,
    ) -> anyhow::Result<()> {
        let mut parent: Option<i64> = None;
        for (depth, &frame_id) in leaf_first.iter().rev().enumerate() {
            let next_id = self.callsites.len() as i64;
            let id = *self.callsites.entry((parent, frame_id)).or_insert(next_id);
            if id == next_id {
                self.callsite_rows.push(&Callsite {
                    callsite_id: id,
                    parent_id: parent,
                    frame_id,
                    depth: depth as i32,
                });
            }
            parent = Some(id);
        }
        // A sample without any frame (perf script prints the header line alone) is CPU time
        // all the same: it has no callsite, and folds as its process name alone, as
        // stackcollapse-perf.pl and inferno count it.
        let leaf = parent;
        if self
            .threads
            .get(&(sample.pid, sample.tid))
            .map(String::as_str)
            != Some(sample.comm)
        {
            self.thread_rows.push(&Thread {
                ts_ns: sample.ts_ns,
                pid: sample.pid,
                tid: sample.tid,
                ppid: None,
                comm: sample.comm,
                cmdline: None,
                exe: None,
                start_ts_ns: None,
                reason: "import",
            });
            self.threads
                .insert((sample.pid, sample.tid), sample.comm.to_string());
        }
        self.sample_rows.push(&StackSample {
            ts_ns: sample.ts_ns,
            cpu: sample.cpu,
            pid: sample.pid,
            tid: sample.tid,
            comm: sample.comm,
            event: sample.event,
            weight: sample.weight,
            callsite_id: leaf,
            unwind: sample.unwind,
            truncated: sample.truncated,
        });
        if self.sample_rows.len() >= SEGMENT_ROWS {
            self.flush(writer)?;
            writer.close_segment()?;
        }
        Ok(())
    }

    /// Hands every buffered row to the writer (the caller closes the segment).
    pub fn flush(&mut self, writer: &mut BundleWriter) -> anyhow::Result<()> {
        writer.append(tables::FRAME, self.frame_rows.finish())?;
        writer.append(tables::CALLSITE, self.callsite_rows.finish())?;
        writer.append(tables::THREAD, self.thread_rows.finish())?;
        writer.append(tables::STACK_SAMPLE, self.sample_rows.finish())?;
        Ok(())
    }
}
