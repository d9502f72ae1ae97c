//! A crate's layering, checked from its own source as rust-analyzer's `tidy.rs` checks its tree:
//! every `crate::` path in `src/` is an edge between top-level modules; cycles, edges against a
//! crate's rules, clap outside `cli`, and files over [`MAX_LINES`] are findings. Shared by the
//! analyzer's and the recorder's suites (the recorder includes this file by path).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The longest a source file may be (its tests excluded): past it, split by responsibility.
pub const MAX_LINES: usize = 600;

/// A crate's rules.
pub struct Rules {
    /// Modules low in the stack and everything they may import; anything else is refused.
    pub may_import: &'static [(&'static str, &'static [&'static str])],
    /// Modules that only the modules listed may import.
    pub imported_only_by: &'static [(&'static str, &'static [&'static str])],
}

/// The top-level module of a file under `src/` (`cli/args.rs` → `cli`, `heatmap.rs` →
/// `heatmap`).
fn top_module(rel: &Path) -> String {
    let first = rel.components().next().expect("a relative path");
    let first = first.as_os_str().to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// The text of a file without its test module and comments.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules a file's code names (`crate::x`, `crate::{x, y::z}`).
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|p| ident(p.trim())));
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// Whether the code uses clap (a path into it or one of its derives).
fn uses_clap(code: &str) -> bool {
    code.contains("clap::")
        || code.match_indices("#[derive(").any(|(i, _)| {
            let derive = &code[i..i + code[i..].find(')').unwrap_or(0)];
            ["Parser", "Args", "Subcommand", "ValueEnum"]
                .iter()
                .any(|d| derive.split([',', '(', ' ']).any(|w| w == *d))
        })
}

/// What the tree breaks: one line per finding.
#[derive(Debug, Default)]
pub struct Tree {
    /// Module → modules it imports.
    pub edges: BTreeMap<String, BTreeSet<String>>,
    /// Modules whose code uses clap.
    clap: BTreeSet<String>,
    /// (file, lines) over the limit.
    long: Vec<(String, usize)>,
}

impl Tree {
    pub fn read(src: &Path) -> Tree {
        let mut tree = Tree::default();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src/ lists") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(src).expect("under src/");
                let text = std::fs::read_to_string(&path).expect("source reads");
                tree.add(rel, &text);
            }
        }
        tree
    }

    fn add(&mut self, rel: &Path, text: &str) {
        let module = top_module(rel);
        let code = code(text);
        let lines = code.lines().count();
        if lines > MAX_LINES {
            self.long.push((rel.display().to_string(), lines));
        }
        if uses_clap(&code) {
            self.clap.insert(module.clone());
        }
        let mut deps = imports(&code);
        deps.remove(&module);
        self.edges.entry(module).or_default().extend(deps);
    }

    pub fn findings(&self, rules: &Rules) -> Vec<String> {
        let mut out = Vec::new();
        for (from, deps) in &self.edges {
            for to in deps {
                if let Some((_, allowed)) = rules.may_import.iter().find(|(m, _)| m == from)
                    && !allowed.contains(&to.as_str())
                {
                    out.push(format!(
                        "{from} imports {to}: {from} may import {allowed:?}"
                    ));
                }
                if let Some((_, users)) = rules.imported_only_by.iter().find(|(m, _)| m == to)
                    && !users.contains(&from.as_str())
                {
                    out.push(format!("{from} imports {to}: only {users:?} may"));
                }
            }
        }
        for m in &self.clap {
            if m != "cli" && m != "main" {
                out.push(format!("{m} uses clap: command-line types live in cli/"));
            }
        }
        for (file, n) in &self.long {
            out.push(format!("{file}: {n} lines (over {MAX_LINES})"));
        }
        out.extend(
            self.cycles()
                .into_iter()
                .map(|c| format!("cycle: {}", c.join(" → "))),
        );
        out
    }

    /// Each cycle between top-level modules, as one path that returns to its start.
    fn cycles(&self) -> Vec<Vec<String>> {
        let mut cycles = Vec::new();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        for start in self.edges.keys() {
            // Depth-first from `start`, over modules not yet reported: a path back to `start`
            // is a cycle.
            let mut stack: Vec<(Vec<&str>, usize)> = vec![(vec![start.as_str()], 0)];
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            while let Some((path, next)) = stack.pop() {
                let last = *path.last().expect("non-empty");
                let deps: Vec<&str> = self
                    .edges
                    .get(last)
                    .map(|d| d.iter().map(String::as_str).collect())
                    .unwrap_or_default();
                let Some(&dep) = deps.get(next) else {
                    continue;
                };
                stack.push((path.clone(), next + 1));
                if dep == start {
                    let mut c: Vec<String> = path.iter().map(|s| s.to_string()).collect();
                    c.push(start.clone());
                    cycles.push(c);
                    break;
                }
                if !done.contains(dep) && seen.insert(dep) {
                    let mut longer = path.clone();
                    longer.push(dep);
                    stack.push((longer, 0));
                }
            }
            done.insert(start);
        }
        cycles
    }
}

/// Fails, listing every finding, unless `src` (read whole: at least `min_modules` top-level
/// modules, `module` among them) keeps `rules`.
pub fn assert_layered(src: &Path, rules: &Rules, min_modules: usize, module: &str) {
    let tree = Tree::read(src);
    assert!(
        tree.edges.len() > min_modules && tree.edges.contains_key(module),
        "read too little of {}: {:?}",
        src.display(),
        tree.edges.keys()
    );
    let findings = tree.findings(rules);
    assert!(
        findings.is_empty(),
        "{} breaks its layering (ARCHITECTURE.md):\n{}",
        src.display(),
        findings.join("\n")
    );
}

/// The checker itself: a tree with every kind of break reports each one.
#[test]
fn tidy_reports_cycles_upward_imports_clap_and_long_files() {
    let mut tree = Tree::default();
    tree.add(
        Path::new("sql/session.rs"),
        "use crate::cluster::remote;\nuse crate::{bundle, intern::X};\n",
    );
    tree.add(Path::new("cluster.rs"), "use crate::sql::Session;\n");
    tree.add(
        Path::new("heatmap.rs"),
        "use crate::cli::Args; // crate::commands in a comment\n#[derive(Debug, clap::ValueEnum)]\n",
    );
    tree.add(
        Path::new("bundle/mod.rs"),
        "fn f() { crate::bundle::x(); }\n",
    );
    tree.add(
        Path::new("report/mod.rs"),
        &format!(
            "{}#[cfg(test)]\n{}",
            "fn f() {}\n".repeat(MAX_LINES + 1),
            "use crate::cli::Args;\n".repeat(MAX_LINES)
        ),
    );
    let rules = Rules {
        may_import: &[("sql", &["bundle", "intern"]), ("bundle", &[])],
        imported_only_by: &[("cli", &["lib", "main"])],
    };
    let findings = tree.findings(&rules);
    let expect = [
        "sql imports cluster: sql may import [\"bundle\", \"intern\"]",
        "heatmap imports cli: only [\"lib\", \"main\"] may",
        "heatmap uses clap: command-line types live in cli/",
        "report/mod.rs: 601 lines (over 600)",
        "cycle: cluster → sql → cluster",
    ];
    for e in expect {
        assert!(
            findings.iter().any(|f| f == e),
            "{e:?} not in {findings:#?}"
        );
    }
    assert_eq!(findings.len(), expect.len(), "{findings:#?}");
}
