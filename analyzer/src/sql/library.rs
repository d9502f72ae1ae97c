//! The `queries/` SQL library: every file's views with their documentation, parsed from the
//! files embedded at build time. A file is a header paragraph, then for each view a `--` block
//! (summary line, description, a `Columns:` list of `name  meaning, unit`) above its
//! `CREATE VIEW name AS ...;`.

mod files {
    include!(concat!(env!("OUT_DIR"), "/queries.rs"));
}

/// One view of the library.
#[derive(Debug, Clone)]
pub struct View {
    /// View name, as SQL sees it.
    pub name: String,
    /// Path of its file under `queries/`.
    pub file: &'static str,
    /// First line of its comment block.
    pub summary: String,
    /// The whole comment block, without the `-- ` markers.
    pub doc: String,
    /// Documented output columns, in order.
    pub columns: Vec<(String, String)>,
    /// The `CREATE VIEW` statement.
    pub sql: String,
    /// The view's final `ORDER BY` list. DataFusion drops the order of a view used as a
    /// relation, so `perfpack sql B NAME` sorts by this again.
    pub order_by: Option<String>,
}

impl View {
    /// The query that prints the view in its documented order.
    pub fn select_sql(&self) -> String {
        match &self.order_by {
            Some(o) => format!("SELECT * FROM {} ORDER BY {o}", self.name),
            None => format!("SELECT * FROM {}", self.name),
        }
    }
}

/// Every view of the library, in file order.
pub fn views() -> Vec<View> {
    let mut out = Vec::new();
    for (file, text) in files::FILES {
        out.extend(parse_file(file, text));
    }
    out
}

/// Looks a view up by name.
pub fn find(name: &str) -> Option<View> {
    views()
        .into_iter()
        .find(|v| v.name.eq_ignore_ascii_case(name))
}

fn parse_file(file: &'static str, text: &str) -> Vec<View> {
    let mut views = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    let mut sql: Option<(String, String)> = None; // (name, text so far)
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((name, body)) = sql.as_mut() {
            body.push('\n');
            body.push_str(line);
            if trimmed.ends_with(';') {
                let body = body.trim_end().trim_end_matches(';').to_string();
                views.push(make_view(file, std::mem::take(name), &comment, body));
                comment.clear();
                sql = None;
            }
            continue;
        }
        if let Some(c) = trimmed.strip_prefix("--") {
            comment.push(c.strip_prefix(' ').unwrap_or(c));
        } else if trimmed.is_empty() {
            comment.clear();
        } else if let Some(name) = view_name(trimmed) {
            if trimmed.ends_with(';') {
                let body = trimmed.trim_end_matches(';').to_string();
                views.push(make_view(file, name, &comment, body));
                comment.clear();
            } else {
                sql = Some((name, line.to_string()));
            }
        } else {
            panic!("queries/{file}: statement outside CREATE VIEW: {trimmed}");
        }
    }
    assert!(
        sql.is_none(),
        "queries/{file}: last view has no closing `;`"
    );
    views
}

fn view_name(line: &str) -> Option<String> {
    let upper = line.to_ascii_uppercase();
    let rest = upper
        .strip_prefix("CREATE OR REPLACE VIEW ")
        .or_else(|| upper.strip_prefix("CREATE VIEW "))?;
    let start = line.len() - rest.len();
    let name = line[start..].split_whitespace().next()?;
    Some(name.to_string())
}

fn make_view(file: &'static str, name: String, comment: &[&str], sql: String) -> View {
    // The summary is the first sentence of the first paragraph.
    let paragraph = comment
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" ");
    let summary = match paragraph.find(". ") {
        Some(i) => paragraph[..=i].to_string(),
        None => paragraph,
    };
    let mut columns = Vec::new();
    let mut in_columns = false;
    for line in comment {
        if line.trim() == "Columns:" {
            in_columns = true;
        } else if in_columns && line.starts_with("  ") {
            let line = line.trim();
            let (col, meaning) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            columns.push((col.to_string(), meaning.trim().to_string()));
        } else {
            in_columns = false;
        }
    }
    // The last `ORDER BY` that starts a line is the view's own (window and aggregate orders
    // sit inside lines).
    let order_by = sql
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix("ORDER BY "))
        .map(|o| o.trim().to_string());
    View {
        name,
        file,
        summary,
        doc: comment.join("\n"),
        columns,
        sql,
        order_by,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_views_with_their_docs() {
        let text = "-- Header.\n-- Needs: t.\n\n-- First view.\n-- More.\n--\n-- Columns:\n--   a  the a, ns\n--   b  the b\nCREATE VIEW v1 AS\nSELECT 1 AS a,\n 2 AS b;\n\n-- Second.\nCREATE VIEW v2 AS SELECT 1;\n";
        let views = parse_file("x/y.sql", text);
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].name, "v1");
        assert_eq!(views[0].summary, "First view.");
        assert_eq!(
            views[0].columns,
            vec![
                ("a".into(), "the a, ns".into()),
                ("b".into(), "the b".into())
            ]
        );
        assert_eq!(views[0].sql, "CREATE VIEW v1 AS\nSELECT 1 AS a,\n 2 AS b");
        assert_eq!(views[0].order_by, None);
        assert_eq!(views[1].name, "v2");
        assert_eq!(views[1].sql, "CREATE VIEW v2 AS SELECT 1");
    }

    #[test]
    fn view_names_are_unique() {
        let mut names: Vec<_> = views().into_iter().map(|v| v.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
