//! The analyzer's layering (ARCHITECTURE.md): `main/lib → cli → commands → pictures, analysis,
//! export, import → sql → bundle → the schema crate`, checked by [`checker`].

pub mod checker;

use std::path::Path;

use checker::Rules;

const RULES: Rules = Rules {
    // Modules low in the stack and everything they may import; anything else is refused.
    may_import: &[
        // Helpers with no crate imports.
        ("fold", &[]),
        ("intern", &[]),
        ("svg", &[]),
        ("text_table", &[]),
        // Opening bundles and datasets: below SQL.
        ("bundle", &[]),
        // The DataFusion session, views and block pairing: never a command, analysis or
        // cluster.
        ("sql", &["bundle", "intern"]),
        // Importers write bundles; they read no session.
        ("import", &["bundle", "intern"]),
        // Computed data: no drawing, no commands. `picture` for its row streaming only.
        (
            "analysis",
            &[
                "bundle", "sql", "scope", "picture", "intern", "fold", "stacks",
            ],
        ),
    ],
    // Modules that only the modules listed may import.
    imported_only_by: &[
        ("cli", &["lib", "main"]),
        ("commands", &["lib", "main", "cli"]),
        // Drawing is the last step: what computes never draws.
        ("render", &["commands", "report"]),
    ],
};

#[test]
fn the_analyzer_is_layered_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    checker::assert_layered(&src, &RULES, 20, "commands");
}
