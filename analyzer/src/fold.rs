//! Folded stacks (`comm;root;...;leaf count`), the input format of FlameGraph and inferno, with
//! the frame-name clean-up those tools apply so that output from a bundle and output of
//! `inferno-collapse-perf` on the same capture agree: argument lists dropped (but not Go's
//! `.(*T)` receivers or C++ `(anonymous namespace)`), `;` in names turned into `:`, unknown
//! symbols named after their module (`[libc.so.6]`), and Java's leading `L` removed. Where perfpack
//! departs from inferno on purpose: a C++ local entity keeps the scope that names it
//! (`run(SCC&)::$_0::operator()`, where inferno cuts at the first `(` and merges the lambda into
//! `run`), and a frame beginning with `(` (`(anonymous namespace)::f`) stays a frame (inferno
//! drops it as stackcollapse-perf.pl's process-name rule does).

/// A frame's symbol, or `[module]` (its file name) where no symbol covers the address.
pub fn symbol_or_module(name: &str, module: Option<&str>) -> String {
    match module {
        Some(m) if name == "[unknown]" && m != "[unknown]" => {
            format!("[{}]", m.rsplit('/').next().unwrap_or(m))
        }
        _ => name.to_string(),
    }
}

/// The folded-stack name of a frame.
pub fn frame_name(name: &str, module: Option<&str>, java: bool) -> String {
    let name = symbol_or_module(name, module);
    let mut name = drop_arguments(&name.replace(';', ":"));
    if java && name.starts_with('L') && name.contains('/') {
        name.remove(0);
    }
    name
}

/// Drops a top-level argument list: `foo(int)` → `foo`, `ns::f<a(b)>(x)` → `ns::f<a(b)>`,
/// keeping `net/http.(*Client).Do` and `(anonymous namespace)::f` as inferno does, and, where
/// inferno cuts, the scope of a local entity and the call operator's name:
/// `run(SCC&)::$_0::operator()(Function&) const` → `run(SCC&)::$_0::operator()`, so a lambda
/// stays a frame of its own instead of merging into the function that defines it.
fn drop_arguments(name: &str) -> String {
    let mut depth = 0i32;
    let mut after_dot = None;
    let mut prev = '\0';
    let mut skip_to = 0;
    for (i, c) in name.char_indices() {
        let arrow = prev == '-' && c == '>';
        prev = c;
        if i < skip_to {
            continue;
        }
        match c {
            '<' | '{' | '[' => depth += 1,
            // `operator->` closes nothing.
            '>' if arrow => {}
            '>' | '}' | ']' | ')' => depth -= 1,
            '(' => {
                let go_receiver = after_dot == Some(i);
                let anonymous = name[i..].starts_with("(anonymous namespace)");
                if depth == 0 && !go_receiver && !anonymous {
                    let call_operator = name[..i].ends_with("operator");
                    let close = matching_paren(name, i);
                    let scope = close.is_some_and(|j| name[j + 1..].starts_with("::"));
                    match close {
                        Some(j) if call_operator || scope => {
                            skip_to = j + 1;
                            continue;
                        }
                        _ => return name[..i].to_string(),
                    }
                }
                depth += 1;
            }
            '.' => after_dot = Some(i + 1),
            _ => {}
        }
    }
    name.to_string()
}

/// The index of the `)` that closes the `(` at `open`.
fn matching_paren(name: &str, open: usize) -> Option<usize> {
    let mut depth = 0u32;
    for (i, b) in name.bytes().enumerate().skip(open) {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The folded-stack name of a process (spaces are separators in the format's count column).
pub fn comm_name(comm: &str) -> String {
    comm.replace(' ', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_flamegraph_tools_fold_them() {
        assert_eq!(
            frame_name("operator new(unsigned long)", None, false),
            "operator new"
        );
        assert_eq!(
            frame_name("std::vector<int (*)(int)>::push_back(int)", None, false),
            "std::vector<int (*)(int)>::push_back"
        );
        assert_eq!(
            frame_name("net/http.(*Client).Do", None, false),
            "net/http.(*Client).Do"
        );
        assert_eq!(
            frame_name("(anonymous namespace)::run()", None, false),
            "(anonymous namespace)::run"
        );
        assert_eq!(
            frame_name("[unknown]", Some("/usr/lib/libc.so.6"), false),
            "[libc.so.6]"
        );
        assert_eq!(
            frame_name("std::unique_ptr<Foo>::operator->() const", None, false),
            "std::unique_ptr<Foo>::operator->"
        );
        assert_eq!(frame_name("[unknown]", None, false), "[unknown]");
        // A lambda's scope is the function that defines it; inferno 0.12 cuts both of these to
        // `llvm::DevirtSCCRepeatedPass::run`, merging the lambda into that function.
        let lambda = "llvm::DevirtSCCRepeatedPass::run(llvm::LazyCallGraph::SCC&, llvm::AnalysisManager<llvm::LazyCallGraph::SCC, llvm::LazyCallGraph&>&)::$_0::operator()";
        assert_eq!(frame_name(lambda, None, false), lambda);
        assert_eq!(
            frame_name(&format!("{lambda}(llvm::Function&) const"), None, false),
            lambda
        );
        assert_eq!(
            frame_name(
                "llvm::DevirtSCCRepeatedPass::run(llvm::LazyCallGraph::SCC&, llvm::AnalysisManager<llvm::LazyCallGraph::SCC, llvm::LazyCallGraph&>&)",
                None,
                false
            ),
            "llvm::DevirtSCCRepeatedPass::run"
        );
        assert_eq!(
            frame_name(
                "f(int)::{lambda(int)#1}::operator()(int) const",
                None,
                false
            ),
            "f(int)::{lambda(int)#1}::operator()"
        );
        assert_eq!(
            frame_name("{lambda(int, int)#2}::operator()", None, false),
            "{lambda(int, int)#2}::operator()"
        );
        // An unbalanced name is cut at its first top-level `(` as before.
        assert_eq!(frame_name("broken(int::x", None, false), "broken");
        assert_eq!(frame_name("a;b", None, false), "a:b");
        assert_eq!(
            frame_name("Ljava/util/HashMap;::getNode", None, true),
            "java/util/HashMap:::getNode"
        );
        assert_eq!(comm_name("C2 CompilerThre"), "C2_CompilerThre");
    }
}
