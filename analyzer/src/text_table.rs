//! Aligned plain-text tables for terminal output: columns padded to their widest cell, numbers
//! right-aligned.

/// A table being built row by row.
#[derive(Debug, Default)]
pub struct TextTable {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl TextTable {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        TextTable {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (cells beyond the header are dropped, missing ones are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with two spaces between columns and no trailing spaces.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let cell = |r: &Vec<String>, i: usize| r.get(i).map_or("", String::as_str).to_string();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(cell(r, i).chars().count());
            }
        }
        let numeric: Vec<bool> = (0..n)
            .map(|i| {
                !self.rows.is_empty()
                    && self.rows.iter().all(|r| {
                        let c = cell(r, i);
                        c.is_empty() || c.parse::<f64>().is_ok()
                    })
            })
            .collect();
        let mut out = String::new();
        let mut line = |cells: Vec<String>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(c.chars().count());
                if numeric[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    if i + 1 < n {
                        s.push_str(&" ".repeat(pad));
                    }
                }
                if i + 1 < n {
                    s.push_str("  ");
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(self.header.clone());
        for r in &self.rows {
            line((0..n).map(|i| cell(r, i)).collect());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_text_left_and_numbers_right() {
        let mut t = TextTable::new(&["name", "rows"]);
        t.row(vec!["frame".into(), "7".into()]);
        t.row(vec!["stack_sample".into(), "3960".into()]);
        assert_eq!(
            t.render(),
            "name          rows\nframe            7\nstack_sample  3960\n"
        );
    }
}
