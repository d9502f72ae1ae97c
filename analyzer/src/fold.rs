//! Folded stacks (`comm;root;...;leaf count`), the input format of FlameGraph and inferno, with
//! the frame-name clean-up those tools apply so that output from a bundle and output of
//! `inferno-collapse-perf` on the same capture agree: argument lists dropped (but not Go's
//! `.(*T)` receivers or C++ `(anonymous namespace)`), `;` in names turned into `:`, unknown
//! symbols named after their module (`[libc.so.6]`), and Java's leading `L` removed.

/// The folded-stack name of a frame.
pub fn frame_name(name: &str, module: Option<&str>, java: bool) -> String {
    let name = if name == "[unknown]"
        && let Some(m) = module
        && m != "[unknown]"
    {
        format!("[{}]", m.rsplit('/').next().unwrap_or(m))
    } else {
        name.to_string()
    };
    let mut name = drop_arguments(&name.replace(';', ":"));
    if java && name.starts_with('L') && name.contains('/') {
        name.remove(0);
    }
    name
}

/// Drops a top-level argument list: `foo(int)` → `foo`, `ns::f<a(b)>(x)` → `ns::f<a(b)>`,
/// keeping `net/http.(*Client).Do` and `(anonymous namespace)::f`.
fn drop_arguments(name: &str) -> String {
    let mut depth = 0i32;
    let mut after_dot = None;
    let mut prev = '\0';
    for (i, c) in name.char_indices() {
        let arrow = prev == '-' && c == '>';
        prev = c;
        match c {
            '<' | '{' | '[' => depth += 1,
            // `operator->` closes nothing.
            '>' if arrow => {}
            '>' | '}' | ']' | ')' => depth -= 1,
            '(' => {
                let go_receiver = after_dot == Some(i);
                let anonymous = name[i..].starts_with("(anonymous namespace)");
                if depth == 0 && !go_receiver && !anonymous {
                    return name[..i].to_string();
                }
                depth += 1;
            }
            '.' => after_dot = Some(i + 1),
            _ => {}
        }
    }
    name.to_string()
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
        assert_eq!(frame_name("a;b", None, false), "a:b");
        assert_eq!(
            frame_name("Ljava/util/HashMap;::getNode", None, true),
            "java/util/HashMap:::getNode"
        );
        assert_eq!(comm_name("C2 CompilerThre"), "C2_CompilerThre");
    }
}
