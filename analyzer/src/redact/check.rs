//! `perfpack redact --check`: every string of a bundle's manifest and tables examined under the
//! rules redaction applies (what it would still replace), and for the patterns that identify
//! wherever they stand (addresses, the host's names, users' paths), without writing anything.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use arrow_array::cast::AsArray as _;
use arrow_array::{Array, RecordBatch};
use perfpack_schema::{Bundle, tables};

use super::{
    Options, Redactor, Rule, What, column_rule, field_rule, identifying, kept, manifest_strings,
};

/// Paths under the directories of users and of temporary files (JIT maps aside).
fn user_path(s: &str) -> bool {
    ["/home/", "/root/", "/tmp/"].iter().any(|d| {
        s.match_indices(d).any(|(i, _)| {
            let rest = &s[i..];
            let end = rest.find([' ', '\'', '"', ')', ',']).unwrap_or(rest.len());
            !kept(What::Path, &rest[..end])
        })
    })
}

/// Every string of a batch by column: (column, value), map values as `column[key]`.
fn batch_strings(batch: &RecordBatch, mut f: impl FnMut(&str, &str)) {
    let schema = batch.schema();
    for (i, field) in schema.fields().iter().enumerate() {
        let c = batch.column(i);
        if let Some(s) = c.as_string_opt::<i32>() {
            for v in s.iter().flatten() {
                f(field.name(), v);
            }
        } else if let Some(m) = c.as_map_opt()
            && let (Some(k), Some(v)) = (
                m.keys().as_string_opt::<i32>(),
                m.values().as_string_opt::<i32>(),
            )
        {
            for j in 0..v.len() {
                if !v.is_null(j) {
                    f(&format!("{}[{}]", field.name(), k.value(j)), v.value(j));
                }
            }
        }
    }
}

/// What `--check` found: per kind of value, where it was and up to three examples.
#[derive(Default)]
struct Findings(BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>);

impl Findings {
    fn add(&mut self, kind: &str, place: &str, value: &str) {
        let e = self.0.entry(kind.to_string()).or_default();
        e.0.insert(place.to_string());
        if e.1.len() < 3 {
            e.1.insert(value.chars().take(80).collect());
        }
    }

    /// A value in `place` under `rule`: what full redaction would replace, and the patterns
    /// that identify wherever they are (kept columns too).
    fn examine(&mut self, r: &mut Redactor, place: &str, rule: Rule, value: &str) {
        if rule != Rule::Keep && r.apply(rule, value) != value {
            let kind = match rule {
                Rule::Token(w) => w.label(),
                _ => "words of free text (paths, host names, addresses)",
            };
            self.add(kind, place, value);
        }
        for word in value.split([' ', '(', ')', '=', ',', '"', '\'']) {
            if let Some(kind) = identifying(word) {
                self.add(kind, place, word);
            }
            if r.identity.iter().any(|i| i.eq_ignore_ascii_case(word)) {
                self.add("the host's name or boot id", place, word);
            }
        }
        if user_path(value) {
            self.add("paths under /home, /root or /tmp", place, value);
        }
    }
}

/// `redact --check`: every string of the manifest and of every table, examined.
pub fn check(bundle: &Bundle, a: &Options) -> anyhow::Result<()> {
    let mut r = Redactor::new(a, bundle.manifest());
    let mut found = Findings::default();
    let mut n = 0u64;
    let mut m = bundle.manifest().clone();
    manifest_strings(&mut m, |place, rule, v| {
        n += 1;
        found.examine(&mut r, &format!("manifest {place}"), rule, v);
    });
    for t in tables::ALL {
        for seg in bundle.segments(t) {
            let path = bundle.display_path(seg);
            for batch in bundle.open_segment(t, seg)? {
                let batch =
                    batch.map_err(|e| anyhow::anyhow!("{}: corrupt data: {e}", path.display()))?;
                batch_strings(&batch, |column, v| {
                    n += 1;
                    // A mount point's key is `mount.PATH`: PATH is a path.
                    let (rule, v) = if t.name == "config" && column == "key" {
                        match v.strip_prefix("mount.") {
                            Some(at) => (Rule::Token(What::Path), at),
                            None => (Rule::Keep, v),
                        }
                    } else if t.name == "config" {
                        (Rule::Text, v)
                    } else if let Some(key) = column
                        .strip_prefix("str_fields[")
                        .and_then(|k| k.strip_suffix(']'))
                    {
                        (field_rule(key), v)
                    } else {
                        (column_rule(t.name, column), v)
                    };
                    let place =
                        format!("{}.{}", t.name, column.split('[').next().unwrap_or(column));
                    found.examine(&mut r, &place, rule, v);
                });
            }
        }
    }
    let name = a.bundle.display();
    if found.0.is_empty() {
        println!(
            "{name}: no identifying values found ({n} strings of the manifest and every table examined)"
        );
        return Ok(());
    }
    println!("{name} holds identifying values:");
    for (kind, (places, examples)) in &found.0 {
        let places: Vec<&str> = places.iter().map(String::as_str).collect();
        let examples: Vec<String> = examples.iter().map(|e| format!("{e:?}")).collect();
        println!(
            "  {kind}: in {} (e.g. {})",
            places.join(", "),
            examples.join(", ")
        );
    }
    bail!(
        "{name}: {} kinds of identifying values left (listed above); `perfpack redact` replaces them",
        found.0.len()
    )
}
