//! The data behind the report's flame graphs: folded stacks as a tree of names, and the weight
//! of each leaf per time bucket, serialized as JSON for the page's script to draw.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use perfpack_schema::fxhash::FxHashMap;
use serde::Serialize;

use crate::flamegraph::Timed;
use crate::svg::esc as h;

/// One flame graph's data, in the shape the script reads.
#[derive(Debug, Serialize)]
pub struct Data {
    /// Distinct frame names; `names[0]` is the root, `all`.
    names: Vec<String>,
    /// Per node: its parent node (the root's is -1). Parents come before their children and
    /// siblings are in name order (a depth-first walk), so the script lays out in one pass.
    parent: Vec<i64>,
    /// Per node: index into `names`.
    name: Vec<u32>,
    /// Width of a time bucket, ns (0: no time dimension).
    bucket_ns: i64,
    /// Flat (bucket, leaf node, weight, samples) quadruples, by bucket.
    cells: Vec<u64>,
    /// Whether buckets can be negative (before the origin): they are offset by this much.
    bucket_base: i64,
    /// Leaf nodes of idle stacks (`analysis::idle`), which the page can hide.
    idle: Vec<u32>,
    /// Whether the page opens with idle hidden: when idle is more than half the samples.
    hide_idle: bool,
}

/// Builds the tree of `lines` (folded, `;`-separated) and returns per line its leaf node.
fn tree(lines: &[&str]) -> (Vec<String>, Vec<i64>, Vec<u32>, Vec<u32>) {
    // Trie by (parent, name id), then renumbered depth-first with children in name order.
    let mut names: Vec<String> = vec!["all".into()];
    let mut name_id: FxHashMap<&str, u32> = FxHashMap::default();
    let mut children: Vec<BTreeMap<u32, u32>> = vec![BTreeMap::new()];
    let mut node_name: Vec<u32> = vec![0];
    let mut leaf_of = Vec::with_capacity(lines.len());
    for line in lines {
        let mut at = 0u32;
        for frame in line.split(';') {
            let nid = *name_id.entry(frame).or_insert_with(|| {
                names.push(frame.to_string());
                (names.len() - 1) as u32
            });
            at = match children[at as usize].get(&nid) {
                Some(&c) => c,
                None => {
                    let c = node_name.len() as u32;
                    node_name.push(nid);
                    children.push(BTreeMap::new());
                    children[at as usize].insert(nid, c);
                    c
                }
            };
        }
        leaf_of.push(at);
    }
    // Names sorted so that the output does not depend on the order lines came in.
    let mut order: Vec<u32> = (1..names.len() as u32).collect();
    order.sort_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
    let mut rename = vec![0u32; names.len()];
    let mut sorted_names = vec!["all".to_string()];
    for (i, &old) in order.iter().enumerate() {
        rename[old as usize] = i as u32 + 1;
        sorted_names.push(names[old as usize].clone());
    }
    // Depth-first renumbering; children visited in (renamed) name order.
    let mut new_id = vec![u32::MAX; node_name.len()];
    let mut parent = Vec::with_capacity(node_name.len());
    let mut name = Vec::with_capacity(node_name.len());
    let mut stack: Vec<(u32, i64)> = vec![(0, -1)];
    while let Some((node, par)) = stack.pop() {
        new_id[node as usize] = parent.len() as u32;
        parent.push(par);
        name.push(rename[node_name[node as usize] as usize]);
        let me = new_id[node as usize] as i64;
        let mut kids: Vec<(u32, u32)> = children[node as usize]
            .iter()
            .map(|(&n, &c)| (rename[n as usize], c))
            .collect();
        kids.sort_unstable();
        for &(_, c) in kids.iter().rev() {
            stack.push((c, me));
        }
    }
    let leaf_of = leaf_of.into_iter().map(|l| new_id[l as usize]).collect();
    (sorted_names, parent, name, leaf_of)
}

impl Data {
    /// Stacks with a weight per time bucket.
    pub fn timed(t: &Timed) -> Data {
        let lines: Vec<&str> = t.lines.iter().map(String::as_str).collect();
        let (names, parent, name, leaf_of) = tree(&lines);
        let base = t.cells.first().map_or(0, |c| c.0.min(0));
        let mut cells = Vec::with_capacity(t.cells.len() * 4);
        for &(b, s, w, n) in &t.cells {
            cells.extend([(b - base) as u64, leaf_of[s as usize] as u64, w, n]);
        }
        let (idle_samples, samples) = t.samples();
        let mut idle: Vec<u32> = (0..t.lines.len())
            .filter(|&s| t.idle.get(s) == Some(&true))
            .map(|s| leaf_of[s])
            .collect();
        idle.sort_unstable();
        idle.dedup();
        Data {
            names,
            parent,
            name,
            bucket_ns: t.bucket_ns,
            cells,
            bucket_base: base,
            idle,
            hide_idle: 2 * idle_samples > samples,
        }
    }

    /// Whether the page opens with idle hidden.
    pub fn hides_idle(&self) -> bool {
        self.hide_idle
    }

    /// Folded lines with their weights and no time dimension.
    pub fn folded(lines: &BTreeMap<String, u64>) -> Data {
        let kept: Vec<(&str, u64)> = lines
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(l, w)| (l.as_str(), *w))
            .collect();
        let strs: Vec<&str> = kept.iter().map(|x| x.0).collect();
        let (names, parent, name, leaf_of) = tree(&strs);
        let mut cells = Vec::with_capacity(kept.len() * 4);
        for (i, (_, w)) in kept.iter().enumerate() {
            cells.extend([0, leaf_of[i] as u64, *w, 1]);
        }
        Data {
            names,
            parent,
            name,
            bucket_ns: 0,
            cells,
            bucket_base: 0,
            idle: Vec::new(),
            hide_idle: false,
        }
    }
}

/// JSON that is safe inside a `<script>` element: `<`, `>` and `&` as `\u` escapes (they
/// only occur inside strings), so no string can close the element.
pub fn script_json<T: Serialize>(v: &T) -> String {
    let s = serde_json::to_string(v).expect("serializable");
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The flame graph's place on the page: controls, the canvas the script draws on, and its data.
pub fn html(id: &str, title: &str, subtitle: &str, unit: &str, data: &Data) -> String {
    let json = script_json(data);
    let subtitle = format!(
        "{subtitle} · {} frames, {:.0} KB of data in this page",
        crate::picture::group_digits(data.parent.len() as u64),
        json.len() as f64 / 1024.0
    );
    let mut o = String::new();
    let _ = write!(
        o,
        "<div class=\"flame\" id=\"{id}\" data-unit=\"{unit}\">\n<h3>{title}</h3>\n<p class=\"subtitle\">{subtitle}</p>\n\
         <div class=\"controls\"><label>Search <input type=\"search\" class=\"search\" placeholder=\"regex, e.g. ^tcp_\"></label> \
         <button type=\"button\" class=\"reset\">Reset zoom</button> <button type=\"button\" class=\"all\" hidden>Whole capture</button> \
         {idle}<span class=\"range\"></span> <span class=\"matched\"></span></div>\n\
         <div class=\"canvas-box\"><canvas></canvas></div>\n<div class=\"details\">&nbsp;</div>\n\
         <script type=\"application/json\" class=\"flame-data\">{json}</script>\n</div>\n",
        id = h(id),
        idle = if data.idle.is_empty() {
            String::new()
        } else {
            format!(
                "<label><input type=\"checkbox\" class=\"show-idle\"{}> Show idle</label> ",
                if data.hide_idle { "" } else { " checked" }
            )
        },
        unit = h(unit),
        title = h(title),
        subtitle = h(&subtitle),
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_is_depth_first_in_name_order() {
        let (names, parent, name, leaf) = tree(&["b;x", "a;y", "b;w", "a"]);
        // Nodes: all, a, a;y, b, b;w, b;x.
        let path = |n: usize| {
            let mut v = vec![];
            let mut at = n as i64;
            while at > 0 {
                v.push(names[name[at as usize] as usize].clone());
                at = parent[at as usize];
            }
            v.reverse();
            v.join(";")
        };
        let all: Vec<String> = (0..parent.len()).map(path).collect();
        assert_eq!(all, ["", "a", "a;y", "b", "b;w", "b;x"]);
        assert_eq!(leaf, [5, 2, 4, 1]);
    }

    #[test]
    fn script_json_cannot_close_the_element() {
        let s = script_json(&vec!["</script><script>alert(1)</script>"]);
        assert!(!s.contains('<'));
        let back: Vec<String> = serde_json::from_str(&s).unwrap();
        assert_eq!(back[0], "</script><script>alert(1)</script>");
    }
}
