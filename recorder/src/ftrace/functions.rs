//! Kernel function tracing in the recorder's instance, where the kernel allows it, after
//! perf-tools' funccount, funcgraph and kprobe: `--funccount PATTERN` (the function tracer with
//! `set_ftrace_filter`, events counted per function and interval), `--funcgraph FUNC` (the
//! function_graph tracer with `set_graph_function`, one row per return with its duration) and
//! `--kprobe 'p:NAME SYMBOL ARGS'` (a probe in `kprobe_events`, enabled in the instance and
//! decoded like any tracepoint). Guard rails as perf-tools had them: a filter is required, the
//! number of matched functions is reported before tracing starts, and the session stops function
//! tracing when the recorder's CPU use passes `--max-cpu-pct`. Where the kernel refuses a step,
//! its words become the source's reason and the capture goes on without it.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use perfpack_schema::manifest::{Source, SourceStatus};

use super::tracefs::{self, Instance};

/// What function tracing to do.
#[derive(Debug, Clone, Default)]
pub struct FunctionConfig {
    /// `--funccount` patterns (`vfs_*`).
    pub count: Vec<String>,
    /// `--funcgraph` functions.
    pub graph: Vec<String>,
    /// `--kprobe` definitions (`p:NAME SYMBOL ARGS`).
    pub kprobes: Vec<String>,
}

impl FunctionConfig {
    pub fn is_empty(&self) -> bool {
        self.count.is_empty() && self.graph.is_empty() && self.kprobes.is_empty()
    }
}

/// The outcome of one requested feature, for the manifest: `Ok(detail)` or `Err(reason)`.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `funccount`, `funcgraph` or `kprobe`.
    pub source: &'static str,
    pub result: Result<String, String>,
}

/// Sets up the tracer of `inst` for `--funccount` or `--funcgraph` (one tracer per instance).
pub fn set_tracer(inst: &Instance, cfg: &FunctionConfig) -> Vec<Outcome> {
    let mut out = Vec::new();
    if !cfg.count.is_empty() && !cfg.graph.is_empty() {
        // Checked by the command line too; kept here so the library cannot do half of it.
        out.push(Outcome {
            source: "funcgraph",
            result: Err("--funccount and --funcgraph need different tracers; give one".into()),
        });
        return out;
    }
    if !cfg.count.is_empty() {
        let result = tracer(inst, "function", "set_ftrace_filter", &cfg.count);
        out.push(Outcome {
            source: "funccount",
            result,
        });
    } else if !cfg.graph.is_empty() {
        let result = tracer(inst, "function_graph", "set_graph_function", &cfg.graph);
        out.push(Outcome {
            source: "funcgraph",
            result,
        });
    }
    out
}

/// Filters the instance's tracer to `patterns`, reports how many functions matched, and
/// switches the tracer on.
fn tracer(
    inst: &Instance,
    tracer: &str,
    filter_file: &str,
    patterns: &[String],
) -> Result<String, String> {
    let available = tracefs::read_text(&inst.dir.join("available_tracers"))?;
    if !available.split_whitespace().any(|t| t == tracer) {
        return Err(format!(
            "the {tracer} tracer is not offered here (available_tracers: {})",
            available.trim()
        ));
    }
    let filter = inst.dir.join(filter_file);
    if !filter.exists() {
        return Err(format!(
            "{}: not in this kernel's instances",
            filter.display()
        ));
    }
    // One pattern per write, as the kernel parses them; the first truncates.
    for (i, p) in patterns.iter().enumerate() {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(i == 0)
            .append(i > 0)
            .open(&filter)
            .map_err(|e| format!("{}: {e}", filter.display()))?;
        f.write_all(p.as_bytes())
            .map_err(|e| format!("{} {p:?}: {e}", filter.display()))?;
    }
    let matched = tracefs::read_text(&filter)?
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    if matched == 0 {
        return Err(format!(
            "{} matches no traceable function",
            patterns.join(" ")
        ));
    }
    set_current_tracer(inst, tracer)?;
    Ok(format!(
        "{tracer} tracer on {matched} functions matching {}",
        patterns.join(" ")
    ))
}

/// Writes `current_tracer` and checks that the kernel took it (some refuse silently).
pub fn set_current_tracer(inst: &Instance, tracer: &str) -> Result<(), String> {
    let path = inst.dir.join("current_tracer");
    fs::write(&path, tracer).map_err(|e| format!("{}: {e}", path.display()))?;
    let now = tracefs::read_text(&path)?;
    if now.trim() != tracer {
        return Err(format!(
            "{}: the kernel kept {:?}",
            path.display(),
            now.trim()
        ));
    }
    Ok(())
}

/// The `kprobe_events` definition and `group/name` of a `--kprobe` spec, the probe renamed
/// into this recorder's group so that it can be removed and never clashes with another user's.
pub fn kprobe_definition(spec: &str, group: &str) -> Result<(String, String, String), String> {
    let spec = spec.trim();
    let (head, rest) = spec
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("--kprobe {spec:?}: expected 'p:NAME SYMBOL [ARGS]'"))?;
    let (kind, name) = head
        .split_once(':')
        .ok_or_else(|| format!("--kprobe {spec:?}: expected 'p:NAME SYMBOL [ARGS]'"))?;
    if !matches!(kind, "p" | "r") {
        return Err(format!(
            "--kprobe {spec:?}: 'p' (entry) or 'r' (return) probes only"
        ));
    }
    let name = name.rsplit('/').next().unwrap_or(name);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "--kprobe {spec:?}: the probe name must be letters, digits and _"
        ));
    }
    Ok((
        format!("{kind}:{group}/{name} {}", rest.trim()),
        group.to_string(),
        name.to_string(),
    ))
}

/// Defines a kprobe in tracefs's `kprobe_events` (global: instances only enable them).
pub fn add_kprobe(root: &Path, definition: &str) -> Result<(), String> {
    let path = root.join("kprobe_events");
    if !path.exists() {
        return Err(format!(
            "{}: absent (kernel without kprobe events)",
            path.display()
        ));
    }
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(definition.as_bytes())
        .map_err(|e| format!("{} {definition:?}: {e}", path.display()))
}

/// Removes a kprobe this recorder defined.
pub fn remove_kprobe(root: &Path, event: &str) {
    if let Ok(mut f) = fs::OpenOptions::new()
        .append(true)
        .open(root.join("kprobe_events"))
    {
        let _ = f.write_all(format!("-:{event}").as_bytes());
    }
}

/// The manifest sources of `--funccount`, `--funcgraph` and `--kprobe`.
pub fn sources(
    cfg: &FunctionConfig,
    outcomes: Option<&[Outcome]>,
    ftrace_source: &Source,
) -> Vec<Source> {
    let asked = [
        ("funccount", !cfg.count.is_empty()),
        ("funcgraph", !cfg.graph.is_empty()),
        ("kprobe", !cfg.kprobes.is_empty()),
    ];
    let mut out = Vec::new();
    for (name, wanted) in asked {
        if !wanted {
            continue;
        }
        let Some(all) = outcomes else {
            out.push(Source::new(
                name,
                SourceStatus::Unavailable,
                format!("ftrace unavailable: {}", ftrace_source.reason),
                String::new(),
            ));
            continue;
        };
        let outcomes: Vec<_> = all.iter().filter(|o| o.source == name).collect();
        let ok: Vec<&str> = outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().ok().map(String::as_str))
            .collect();
        let refused: Vec<&str> = outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().err().map(String::as_str))
            .collect();
        let status = match (ok.is_empty(), refused.is_empty()) {
            (false, true) => SourceStatus::Ok,
            (false, false) => SourceStatus::Partial,
            (true, _) => SourceStatus::Unavailable,
        };
        out.push(Source::new(name, status, refused.join("; "), ok.join("; ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kprobe_specs_are_renamed_into_the_recorders_group() {
        let (def, group, name) =
            kprobe_definition("p:myopen do_sys_openat2 dfd=%di", "perfpack_42").unwrap();
        assert_eq!(def, "p:perfpack_42/myopen do_sys_openat2 dfd=%di");
        assert_eq!((group.as_str(), name.as_str()), ("perfpack_42", "myopen"));
        let (def, _, _) = kprobe_definition("r:kprobes/ret vfs_read $retval", "g").unwrap();
        assert_eq!(def, "r:g/ret vfs_read $retval");
        for bad in ["do_sys_open", "x:a b", "p:a-b sym", "p: sym"] {
            assert!(kprobe_definition(bad, "g").is_err(), "{bad}");
        }
    }
}
