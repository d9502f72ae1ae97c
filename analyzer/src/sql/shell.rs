//! The interactive SQL shell of `perfpack sql B...` without a query: line editing and history
//! (rustyline), statements that span lines until a `;`, and dot commands for the catalog.

use std::path::PathBuf;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::output::{self, OutFormat};
use super::session::Session;

const HELP: &str = "\
.tables          tables and views of this session
.schema NAME     columns of a table or view
.views           the queries/ library views with their descriptions
.bundles         the bundles and their `bundle`/`host` column values
.quit            leave (also Ctrl-D)
SQL statements end with `;` and may span lines.";

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".perfpack_history"))
}

/// Runs the shell until `.quit` or end of input.
pub async fn run(session: &Session, format: OutFormat) -> anyhow::Result<()> {
    let mut editor = DefaultEditor::new()?;
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    eprintln!(
        "perfpack sql over {} bundle(s); .help for commands, statements end with ;",
        session.names().len()
    );
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "perfpack> "
        } else {
            "      -> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if pending.is_empty() && trimmed.starts_with('.') {
            let _ = editor.add_history_entry(trimmed);
            if !dot_command(session, trimmed).await {
                break;
            }
            continue;
        }
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(&line);
        if !trimmed.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut pending);
        let _ = editor.add_history_entry(sql.as_str());
        if let Err(e) = run_sql(session, &sql, format).await {
            eprintln!("error: {e:#}");
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

async fn run_sql(session: &Session, sql: &str, format: OutFormat) -> anyhow::Result<()> {
    for df in session.plan(sql).await? {
        output::write(df, format, None).await?;
    }
    Ok(())
}

/// Runs a dot command; false means leave.
async fn dot_command(session: &Session, cmd: &str) -> bool {
    let mut words = cmd.split_whitespace();
    let result = match words.next().unwrap_or("") {
        ".quit" | ".exit" => return false,
        ".help" => {
            println!("{HELP}");
            Ok(())
        }
        ".tables" => {
            for name in session.relations() {
                println!("{name}");
            }
            Ok(())
        }
        ".views" => {
            for v in super::library::views() {
                println!("{:<22} {}", v.name, v.summary);
            }
            Ok(())
        }
        ".bundles" => {
            for n in session.names() {
                println!("{}  host={}", n.bundle, n.host);
            }
            Ok(())
        }
        ".schema" => match words.next() {
            Some(name) => {
                let sql = format!(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                     WHERE table_name = '{}' ORDER BY ordinal_position",
                    name.replace('\'', "''")
                );
                run_sql(session, &sql, OutFormat::Table).await
            }
            None => Err(anyhow::anyhow!(".schema needs a table or view name")),
        },
        other => Err(anyhow::anyhow!("unknown command {other}; .help lists them")),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
    }
    true
}
