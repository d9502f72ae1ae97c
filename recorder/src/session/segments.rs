//! A recording's segments: appending what is pending, closing a segment on its own thread,
//! the manifest's figures, ring mode's trimming, and `--on-segment` commands.

use super::*;

impl Capture {
    /// Says what the budget gave up in the manifest, where the source is, as soon as the
    /// writer is here (at once, or when the segment being closed is done).
    pub(super) fn say_in_manifest(&mut self) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        for (name, said) in self.unsaid.drain(..) {
            if let Some(s) = w.manifest_mut().source_mut(name)
                && s.status != SourceStatus::Unavailable
            {
                s.status = SourceStatus::Partial;
                s.reason = if s.reason.is_empty() {
                    said
                } else {
                    format!("{}; {said}", s.reason)
                };
            }
        }
    }

    pub(super) fn update_manifest(&mut self) {
        let losses = |kind: &str, per_cpu: &std::collections::HashMap<u32, u64>| {
            per_cpu_losses(kind, per_cpu.iter().map(|(&c, &n)| (c, n)))
        };
        let mut lost = losses("perf-lost-records", &self.profile.lost);
        lost.extend(losses(
            "perf-lost-switch-samples",
            &self.profile.lost_switches,
        ));
        lost.extend(losses("perf-lost-side-band", &self.profile.lost_side_band));
        // Per event: LOST records per CPU, and what the kernel counted but never arrived.
        let names = self.profile.event_names();
        let mut per_event: Vec<(&(usize, u32), &u64)> = self.profile.lost_events.iter().collect();
        per_event.sort_unstable();
        let per_cpu = per_event
            .into_iter()
            .map(|(&(e, cpu), &count)| (e, Some(cpu), count));
        let missed = (self.missed_event_samples.iter().enumerate()).map(|(e, &n)| (e, None, n));
        for (e, cpu, count) in per_cpu.chain(missed).filter(|l| l.2 > 0) {
            lost.push(Loss {
                kind: "perf-lost-event-samples".into(),
                cpu,
                count,
                event: names.get(e).cloned(),
            });
        }
        let unwind = self
            .profile
            .unwind_stats(perfpack_schema::manifest::Source::MAX_UNWIND_ROWS);
        let (n_samples, n_pmc, n_msr, n_sys, n_process, missed) = (
            self.profile.n_samples
                + self.profile.n_switch_samples
                + self.profile.n_event_samples.iter().sum::<u64>(),
            self.n_pmc,
            self.n_msr,
            self.n_sys,
            self.n_process,
            self.missed_polls,
        );
        let refused: Vec<String> = self
            .profile
            .take_refused_perf_maps()
            .into_iter()
            .map(|(pid, why)| format!("JIT map of pid {pid} refused, its frames unnamed: {why}"))
            .collect();
        let (user, system, rss) = sys::self_usage();
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let m = w.manifest_mut();
        if let Some(s) = m.source_mut(sources::PERF_SAMPLES) {
            s.records = n_samples;
            s.losses = lost;
            s.unwind = unwind;
            for r in &refused {
                eprintln!("warning: perf-samples: {r}");
                s.status = SourceStatus::Partial;
                s.reason = if s.reason.is_empty() {
                    r.clone()
                } else {
                    format!("{}; {r}", s.reason)
                };
            }
        }
        self.refused_perf_maps.extend(refused);
        if let (Some(f), Some(s)) = (&self.ftrace, m.source_mut(sources::FTRACE)) {
            s.records = f.n_events;
            s.losses = f.losses();
        }
        // A failed read is an interval without rows: said as a loss, per CPU.
        if let Some(s) = m.source_mut(sources::PMC) {
            s.records = n_pmc;
            s.losses = per_cpu_losses(
                "pmc-read-failed",
                self.counters.read_failures.iter().map(|(&c, &n)| (c, n)),
            );
        }
        if let (Some(s), Some(msrs)) = (m.source_mut(sources::MSR), &self.msrs) {
            s.records = n_msr;
            s.losses = msrs
                .read_failures
                .iter()
                .flat_map(|(&(source, cpu), &n)| {
                    per_cpu_losses(&format!("{source}-read-failed"), [(cpu, n)])
                })
                .collect();
        }
        if let Some(s) = m.source_mut(sources::PIDSTAT) {
            s.records = n_process;
        }
        if let Some(s) = m.source_mut(sources::PROCFS) {
            s.records = n_sys;
            s.losses = if missed > 0 {
                vec![Loss {
                    kind: "missed-polls".into(),
                    cpu: None,
                    count: missed,
                    event: None,
                }]
            } else {
                Vec::new()
            };
        }
        m.self_cost = SelfCost {
            cpu_user_s: user,
            cpu_system_s: system,
            peak_rss_bytes: rss,
        };
    }

    /// Appends everything gathered for the open segment to the writer.
    pub(super) fn append_pending(&mut self) -> anyhow::Result<()> {
        let w = self.writer.as_mut().expect("writer present after w()");
        self.profile.flush(w)?;
        if let Some(f) = &mut self.ftrace {
            f.flush(w)?;
        }
        w.append(tables::PMC, self.pending.pmc.finish())?;
        w.append(tables::MSR, self.pending.msr.finish())?;
        w.append(tables::SYS_COUNTER, self.pending.sys.finish())?;
        w.append(tables::PROCESS_STAT, self.pending.process.finish())?;
        Ok(())
    }

    /// The writer, waiting for a segment still being closed (and finishing its aftermath).
    pub(super) fn w(&mut self) -> anyhow::Result<&mut BundleWriter> {
        if let Some(handle) = self.closing.take() {
            let (writer, result, index) = handle
                .join()
                .map_err(|_| anyhow::anyhow!("segment writer thread panicked"))?;
            self.writer = Some(writer);
            self.say_in_manifest();
            result.with_context(|| format!("closing segment {index}"))?;
            self.after_close(index)?;
        }
        Ok(self.writer.as_mut().expect("the writer is back"))
    }

    /// The writer, for the end of the recording.
    pub(super) fn take_writer(&mut self) -> anyhow::Result<BundleWriter> {
        self.w()?;
        Ok(self.writer.take().expect("the writer is back"))
    }

    /// Picks up a segment close that has finished, without waiting.
    pub(super) fn poll_closing(&mut self) -> anyhow::Result<()> {
        if self.closing.as_ref().is_some_and(|h| h.is_finished()) {
            self.w()?;
        }
        Ok(())
    }

    /// Hands the open segment to the closing thread (after the previous one is done).
    pub(super) fn close_segment(&mut self) -> anyhow::Result<()> {
        self.w()?;
        self.append_pending()?;
        self.update_manifest();
        let mut writer = self.writer.take().expect("writer present");
        let index = writer.open_segment();
        self.closing = Some(std::thread::spawn(move || {
            let result = writer.close_segment();
            (writer, result, index)
        }));
        Ok(())
    }

    /// What follows a closed segment: ring-mode trimming and the `--on-segment` command.
    pub(super) fn after_close(&mut self, index: u32) -> anyhow::Result<()> {
        self.apply_ring(index)?;
        if let Some(cmd) = &self.cfg.on_segment {
            let dir = self
                .writer
                .as_ref()
                .expect("writer present")
                .root()
                .display()
                .to_string();
            let files: Vec<String> = tables::ALL
                .iter()
                .map(|t| format!("{dir}/{}", t.segment_path(index)))
                .collect();
            let spawned = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(hook_script(cmd))
                .arg("perfpack-record")
                .arg(&dir)
                .env("PERFPACK_SEGMENT", index.to_string())
                .env("PERFPACK_SEGMENT_FILES", files.join("\n"))
                .stdin(std::process::Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => self.children.push((index, child)),
                Err(e) => self
                    .failed_hooks
                    .push(format!("--on-segment for segment {index}: {e}")),
            }
        }
        Ok(())
    }

    /// Ring mode: drop the oldest event segments beyond `--ring` or `--max-bytes`. The
    /// dictionary tables (threads, mappings, frames, callsites) are not dropped with them,
    /// since newer samples refer to their rows, but they count in `--max-bytes`; the rows of
    /// threads and processes that exited before the oldest kept event are compacted away
    /// ([`crate::ring`]). Frames and callsites grow with distinct stacks: when the dictionaries
    /// take over half of `--max-bytes`, the ring keeps less event data (said once).
    pub(super) fn apply_ring(&mut self, closed: u32) -> anyhow::Result<()> {
        let mut keep_from = 0u32;
        if let Some(ring) = self.cfg.ring {
            let n = (ring.as_nanos().div_ceil(self.cfg.segment.as_nanos())).max(1) as u32;
            keep_from = (closed + 1).saturating_sub(n);
        }
        if let Some(max) = self.cfg.max_bytes {
            let m = self.writer.as_ref().expect("writer present").manifest();
            let mut per_seg: std::collections::BTreeMap<u32, u64> = Default::default();
            let mut dictionaries = 0;
            for (name, t) in &m.tables {
                let dictionary = tables::by_name(name).is_none_or(|d| d.dictionary);
                for s in &t.segments {
                    if dictionary {
                        dictionaries += s.bytes;
                    } else {
                        *per_seg.entry(s.index).or_default() += s.bytes;
                    }
                }
            }
            if dictionaries > max / 2 && self.ring_warning.is_none() {
                let w = format!(
                    "ring: threads, mappings, frames and callsites take {:.1} MiB of --max-bytes \
                     {:.1} MiB (they are kept whole); less event data fits",
                    dictionaries as f64 / 1048576.0,
                    max as f64 / 1048576.0
                );
                eprintln!("warning: {w}");
                self.ring_warning = Some(w);
            }
            let mut total: u64 = dictionaries + per_seg.values().sum::<u64>();
            for (&idx, &bytes) in &per_seg {
                if total <= max || idx >= closed {
                    break;
                }
                total -= bytes;
                keep_from = keep_from.max(idx + 1);
            }
        }
        if keep_from > 0 {
            let w = self.writer.as_mut().expect("writer present");
            w.drop_segments_before(keep_from)?;
            if let Some(cutoff) = crate::ring::oldest_event(w) {
                self.dictionary_rows_dropped += crate::ring::compact(w, keep_from, cutoff)?;
            }
        }
        Ok(())
    }

    pub(super) fn reap_children(&mut self, wait: bool) {
        let mut still = Vec::new();
        for (idx, mut child) in self.children.drain(..) {
            let status = if wait {
                child.wait().ok()
            } else {
                child.try_wait().ok().flatten()
            };
            match status {
                Some(s) if !s.success() => self
                    .failed_hooks
                    .push(format!("--on-segment for segment {idx} exited with {s}")),
                Some(_) => {}
                None => still.push((idx, child)),
            }
        }
        self.children = still;
    }
}
