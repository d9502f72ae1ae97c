//! What a sample becomes: its thread and process, its stack unwound and interned, its weight,
//! and whether it is a CPU sample, a switch-out or another event's.

use super::*;

impl Profile {
    /// Applies one record (in time order) from ring `cpu` (with `records::SWITCH_RING` or
    /// `SIDE_RING` set for those rings).
    pub fn handle(&mut self, cpu: u32, rec: Record<'_>, chain: &[u64]) {
        match rec {
            Record::Sample(s) => self.sample(s, chain),
            Record::Mmap {
                pid,
                addr,
                len,
                pgoff,
                exec: true,
                filename,
                ..
            } => {
                let m = MapEntry {
                    start: addr,
                    end: addr + len,
                    pgoff,
                    path: filename.to_string(),
                };
                self.add_map(pid, &m);
            }
            Record::Comm {
                pid,
                tid,
                comm,
                exec,
                time,
            } => {
                if exec {
                    // An exec may come with a move (a service started by its manager).
                    self.cgroups.forget(tid);
                }
                if exec && pid == tid {
                    self.spaces.remove(&pid);
                    if let Some(u) = &mut self.unwinder {
                        u.invalidate(pid);
                    }
                }
                self.threads.insert(tid, (pid, comm.to_string(), time));
                let exe = exec
                    .then(|| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
                    .flatten();
                self.thread_rows.push(&Thread {
                    ts_ns: time as i64,
                    pid,
                    tid,
                    ppid: None,
                    comm,
                    cmdline: None,
                    exe: exe.as_ref().and_then(|p| p.to_str()),
                    start_ts_ns: None,
                    reason: if exec { "exec" } else { "comm" },
                });
            }
            Record::Fork {
                pid,
                ppid,
                tid,
                time,
            } => {
                let comm = self
                    .threads
                    .get(&tid)
                    .or_else(|| self.threads.get(&ppid))
                    .map(|(_, c, _)| c.clone());
                let comm = comm.unwrap_or_default();
                if pid != ppid && !self.spaces.contains_key(&pid) {
                    // A new process starts with a copy of its parent's address space.
                    if let Some(parent) = self.spaces.get(&ppid) {
                        let copy = parent
                            .iter()
                            .map(|m| Map {
                                written: false,
                                ..m.clone()
                            })
                            .collect();
                        self.spaces.insert(pid, copy);
                        if let Some(u) = &mut self.unwinder {
                            u.invalidate(pid);
                        }
                    }
                }
                self.threads.insert(tid, (pid, comm.clone(), time));
                self.thread_rows.push(&Thread {
                    ts_ns: time as i64,
                    pid,
                    tid,
                    ppid: Some(ppid),
                    comm: &comm,
                    cmdline: None,
                    exe: None,
                    start_ts_ns: Some(time as i64),
                    reason: "fork",
                });
            }
            Record::Exit { pid, tid, time } => {
                let comm = self
                    .threads
                    .get(&tid)
                    .map(|(_, c, _)| c.clone())
                    .unwrap_or_default();
                self.thread_rows.push(&Thread {
                    ts_ns: time as i64,
                    pid,
                    tid,
                    ppid: None,
                    comm: &comm,
                    cmdline: None,
                    exe: None,
                    start_ts_ns: None,
                    reason: "exit",
                });
                self.threads_exited.push((tid, time));
                if pid == tid {
                    self.exited.push(pid);
                }
            }
            Record::Lost { count } => {
                use crate::records::{SIDE_RING, SWITCH_RING};
                let (n, event) = crate::records::ring_of(cpu);
                let which = if cpu & SWITCH_RING != 0 {
                    &mut self.lost_switches
                } else if cpu & SIDE_RING != 0 {
                    &mut self.lost_side_band
                } else if let Some(event) = event {
                    *self.lost_events.entry((event, n)).or_default() += count;
                    return;
                } else {
                    &mut self.lost
                };
                *which.entry(n).or_default() += count;
            }
            Record::Mmap { .. } | Record::Other => {}
        }
    }

    /// The clock event's period became `period_ns` at `time` (the `--max-cpu-pct` budget) on
    /// the events `ids`.
    pub fn clock_period_changed(&mut self, time: u64, period_ns: u64, ids: &[u64]) {
        self.clock_periods.push((time, period_ns));
        self.changed_events.extend(ids);
    }

    /// The weight of a sample: the period it reports, or the one set since on its event.
    pub(super) fn sample_period(&self, time: u64, stream_id: u64, reported: u64) -> u64 {
        if !self.changed_events.contains(&stream_id) {
            return reported;
        }
        match self.clock_periods.iter().rev().find(|c| c.0 <= time) {
            Some(&(_, p)) => p,
            None => reported,
        }
    }

    pub(super) fn sample(&mut self, s: Sample<'_>, chain: &[u64]) {
        let Sample {
            pid,
            tid,
            time,
            cpu,
            ..
        } = s;
        match s.cgroup {
            Some(id) => self.cgroups.sample(time as i64, pid, tid, id),
            None => self.cgroups.sample_without_id(time as i64, pid, tid),
        }
        let not_cpu = self.not_cpu.get(&s.id).copied();
        let switch = not_cpu == Some(NotCpu::Switch);
        let stack_event = match not_cpu {
            Some(NotCpu::Event(i)) => Some(i),
            _ => None,
        };
        let period = if switch {
            1
        } else if let Some(i) = stack_event {
            // One sample every `period` events: the events it stands for.
            self.event_periods[i]
        } else {
            self.sample_period(time, s.stream_id, s.period)
        };
        // perf gives the leaf first, with context markers; we build root-first. With stack
        // copies the chain holds the kernel part only and the user part is unwound here.
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        let mut user = false;
        let mut fp_user = false;
        for &ip in chain {
            if ip >= sys::CONTEXT_MAX {
                user = ip == sys::CONTEXT_USER;
                continue;
            }
            fp_user |= user;
            if user {
                self.push_user(&mut path, pid, ip);
            } else {
                path.push(FrameKey::Kernel(ip));
            }
        }
        let mut walk = None;
        if let (Some(regs), Some(_)) = (s.regs, &self.unwinder) {
            walk = Some(self.unwind_user(pid, regs, s.stack));
            let mut user = std::mem::take(&mut self.user);
            for &addr in &user {
                self.push_user(&mut path, pid, addr);
            }
            user.clear();
            self.user = user;
        }
        let (unwind, truncated) = match walk {
            Some(w) => (Some(w.method), Some(w.truncated)),
            None if fp_user => (Some("fp"), None),
            None if self.unwinder.is_some() || !path.is_empty() => (Some("kernel"), None),
            None => (None, None),
        };
        if truncated == Some(true) {
            path.push(FrameKey::Truncated);
        }
        let mut parent: Option<i64> = None;
        for (depth, key) in path.iter().rev().enumerate() {
            let frame = self.intern_frame(*key);
            let next = self.callsite_rows.len() as i64 + 1;
            let k = (parent.unwrap_or(0), frame);
            let id = *self.callsites.entry(k).or_insert(next);
            if id == next {
                self.callsite_rows.push((parent, frame, depth as i32));
            }
            parent = Some(id);
        }
        self.path = path;
        let comm = match self.threads.get(&tid) {
            Some((_, c, _)) => c.as_str(),
            None if tid == 0 => "swapper",
            None => "[unknown]",
        };
        if let Some(method) = unwind.filter(|m| *m != "kernel") {
            let st = self.unwind_stats.entry(pid).or_default();
            st.pid = pid;
            if st.comm != comm {
                st.comm = comm.to_string();
            }
            st.samples += 1;
            match method {
                "dwarf" => st.dwarf += 1,
                "mixed" => st.mixed += 1,
                _ => st.fp += 1,
            }
            st.truncated += u64::from(truncated == Some(true));
        }
        self.samples.push(&StackSample {
            ts_ns: time as i64,
            cpu: cpu as i32,
            pid,
            tid,
            comm,
            event: match stack_event {
                _ if switch => SWITCH_EVENT,
                Some(i) => &self.event_names[i],
                None => self.event,
            },
            weight: period as i64,
            callsite_id: parent,
            unwind,
            truncated,
        });
        if switch {
            self.n_switch_samples += 1;
        } else if let Some(i) = stack_event {
            self.n_event_samples[i] += 1;
            if let Some(ev) = &self.event_formats[i] {
                let (ints, strs) = crate::ftrace::decode::fields(ev, s.raw);
                self.field_rows.push(&SampleField {
                    ts_ns: time as i64,
                    cpu: cpu as i32,
                    tid,
                    event: &self.event_names[i],
                    int_fields: &ints,
                    str_fields: &strs,
                });
            }
        } else {
            self.n_samples += 1;
        }
    }

    /// Pushes the frame of a user address (leaf-first order): the functions inlined there first,
    /// innermost first, then the function itself.
    pub(super) fn push_user(&mut self, path: &mut Vec<FrameKey>, pid: i32, addr: u64) {
        let key = self.resolve_user(pid, addr);
        if let FrameKey::File(f, off) = key {
            for level in (1..=self.inline_depth(f, off)).rev() {
                path.push(FrameKey::Inlined(f, off, level));
            }
        }
        path.push(key);
    }

    /// Unwinds one user stack into `self.user` (leaf first).
    pub(super) fn unwind_user(
        &mut self,
        pid: i32,
        regs: UserRegs,
        stack: &[u8],
    ) -> crate::unwind::Walk {
        let unwinder = self.unwinder.as_mut().expect("unwinding");
        // The process's mappings are handed over only when its unwinder is (re)built.
        let maps: Vec<MapRef<'_>> = match self.spaces.get(&pid) {
            Some(maps) if !unwinder.knows(pid) => maps
                .iter()
                .map(|m| MapRef {
                    start: m.start,
                    end: m.end,
                    pgoff: m.pgoff,
                    file: m.file.map(|f| (f, self.files[f as usize].as_str())),
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut user = std::mem::take(&mut self.user);
        user.clear();
        let walk = unwinder.walk(pid, &maps, regs, stack, &mut user);
        self.user = user;
        walk
    }
}
