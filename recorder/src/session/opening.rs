//! What each source says in the manifest when it opens, and the events it is asked for.

use super::*;

/// Groups events by the kernel's reason: `cycles, instructions: No such file or directory`.
pub(super) fn refusals(refused: &[(String, String)]) -> Vec<String> {
    let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
    for (event, why) in refused {
        match by_reason.iter_mut().find(|(w, _)| w == why) {
            Some((_, events)) => events.push(event),
            None => by_reason.push((why, vec![event])),
        }
    }
    by_reason
        .into_iter()
        .map(|(why, events)| format!("{}: {why}", events.join(", ")))
        .collect()
}

pub(super) fn pmc_source(c: &Counters) -> Source {
    let refused = refusals(&c.refused);
    let detail = if c.opened.is_empty() {
        String::new()
    } else {
        c.opened.join(", ")
    };
    let hw_open = c
        .opened
        .iter()
        .any(|e| matches!(*e, "cycles" | "instructions"));
    let status = if c.opened.is_empty() || !hw_open {
        // Software counters alone do not give cycles or IPC: say the PMU is unavailable.
        SourceStatus::Unavailable
    } else if refused.is_empty() {
        SourceStatus::Ok
    } else {
        SourceStatus::Partial
    };
    let mut reason = refused.join("; ");
    if c.opened.is_empty() && refused.is_empty() {
        reason = "no counters asked for (--pmc '')".to_string();
    }
    if !hw_open && !c.opened.is_empty() {
        reason = format!("no hardware PMU events here ({reason}); software counters recorded");
    }
    Source::new(sources::PMC, status, reason, detail)
}

/// A `--stack-event` as perf_event_open takes it: a software event's number, or a tracepoint's
/// id read from tracefs (its name was checked to be two words, so the path stays under
/// `events/`).
pub(super) fn resolve_stack_event(
    e: &crate::record_config::StackEventArg,
) -> Result<perf::StackEvent, String> {
    let (type_, config) = match perf::SOFTWARE_EVENTS.iter().find(|s| s.0 == e.name) {
        Some(&(_, n)) => (sys::TYPE_SOFTWARE, n),
        None => {
            let (system, name) = e.name.split_once(':').unwrap_or_default();
            (
                sys::TYPE_TRACEPOINT,
                crate::ftrace::tracefs::event_id(system, name)?,
            )
        }
    };
    Ok(perf::StackEvent {
        name: e.name.clone(),
        type_,
        config,
        period: e.period.unwrap_or_else(|| perf::default_period(&e.name)),
    })
}

/// A sampled tracepoint's format, by which its samples' raw records are decoded into
/// `sample_field` rows; `None` for a software event.
pub(super) fn tracepoint_format(
    e: &perf::StackEvent,
) -> Result<Option<crate::ftrace::decode::Event>, String> {
    if e.type_ != sys::TYPE_TRACEPOINT {
        return Ok(None);
    }
    let (system, name) = e.name.split_once(':').unwrap_or_default();
    let format = crate::ftrace::tracefs::event_format(system, name)?;
    Ok(Some(crate::ftrace::decode::Event::new(format)))
}

/// The sampler's source: what it samples and how, and what it could not do.
pub(super) fn perf_source(
    s: &Sampler,
    cfg: &RecordConfig,
    cpus: &[u32],
    stack_events: &[perf::StackEvent],
    kernel_unnamed: Option<String>,
    event_problems: Vec<String>,
) -> (Source, Vec<String>) {
    let mut detail = format!(
        "{} @ {} Hz on {} CPUs, callchains user+kernel, {}",
        s.event,
        cfg.freq,
        cpus.len(),
        match s.unwind {
            perf::Unwind::Fp => "user stacks by frame pointers".to_string(),
            u => format!(
                "user stacks unwound on the box ({}, {} bytes of stack per sample)",
                u.as_str(),
                cfg.stacks.stack_bytes
            ),
        }
    );
    if !s.switch_ids.is_empty() {
        detail.push_str(", sched:sched_switch sampled with stacks at each switch-out");
    }
    for e in stack_events {
        detail.push_str(&format!(
            ", {} sampled with stacks ({})",
            e.name,
            match e.period {
                1 => "every event".to_string(),
                p => format!("every {p} events"),
            }
        ));
    }
    match &s.cgroup_reason {
        None => detail.push_str(", each sample's cgroup (PERF_SAMPLE_CGROUP)"),
        Some(why) => detail.push_str(&format!(
            ", each thread's cgroup read from /proc/TID/cgroup when first sampled and after \
             exec ({why})"
        )),
    }
    if let Some(why) = &s.fallback_reason {
        detail.push_str(&format!(" (hardware {why})"));
    }
    let mut src = Source::new(
        sources::PERF_SAMPLES,
        SourceStatus::Ok,
        String::new(),
        detail,
    );
    let mut problems: Vec<String> = Vec::new();
    if let Some(e) = kernel_unnamed {
        problems.push(format!("kernel frames unsymbolized: {e}"));
    }
    problems.extend(s.unwind_reason.clone());
    problems.extend(s.switch_reason.clone());
    problems.extend(event_problems);
    if !problems.is_empty() {
        src.status = SourceStatus::Partial;
        src.reason = problems.join("; ");
    }
    (src, problems)
}

/// The MSR source: what was read, or why nothing was.
pub(super) fn msr_source(msrs: Option<&Msrs>) -> Source {
    match msrs {
        None => Source::new(
            sources::MSR,
            SourceStatus::Unavailable,
            "disabled by --no-msr".into(),
            String::new(),
        ),
        Some(m) if m.sources.is_empty() => Source::new(
            sources::MSR,
            SourceStatus::Unavailable,
            m.problems.join("; "),
            String::new(),
        ),
        Some(m) if !m.has_aperf_mperf => Source::new(
            sources::MSR,
            SourceStatus::Partial,
            m.problems.join("; "),
            m.sources.join(", "),
        ),
        Some(m) => Source::new(
            sources::MSR,
            SourceStatus::Ok,
            m.problems.join("; "),
            m.sources.join(", "),
        ),
    }
}

/// The ftrace source: the events enabled, and what is missing or refused.
pub(super) fn ftrace_source(f: &Ftrace) -> Source {
    let mut reasons = Vec::new();
    if !f.missing.is_empty() {
        reasons.push(format!("not on this kernel: {}", f.missing.join(", ")));
    }
    if !f.dropped_fields.is_empty() {
        reasons.push(format!(
            "fields no table keeps: {}",
            f.dropped_fields.join(", ")
        ));
    }
    if !f.excludes_self() {
        reasons.push(
            "the recorder's own system calls are traced too (a common_pid filter was refused)"
                .to_string(),
        );
    }
    let status = if reasons.is_empty() {
        SourceStatus::Ok
    } else {
        SourceStatus::Partial
    };
    let detail = f.enabled.join(", ");
    Source::new(sources::FTRACE, status, reasons.join("; "), detail)
}

/// The per-process stats source.
pub(super) fn pidstat_source(pidstat_min_pct: f64) -> Source {
    if pidstat_min_pct > 0.0 {
        Source::new(
            sources::PIDSTAT,
            SourceStatus::Ok,
            String::new(),
            format!(
                "/proc/PID/stat, status, io of processes above {pidstat_min_pct}% of one CPU per interval (at most {})",
                crate::pidstat::MAX_PER_INTERVAL
            ),
        )
    } else {
        Source::new(
            sources::PIDSTAT,
            SourceStatus::Unavailable,
            "disabled (--pidstat-min-pct 0)".into(),
            String::new(),
        )
    }
}
