//! `docs/cli.md` is generated from `--help`; this fails when it drifts. Run with `FLAGPOLE_UPDATE_DOCS=1`
//! to rewrite it.

use flagpole::config::Args;

#[test]
fn cli_docs_match_help() {
    let path = crate::runtime_support::workspace_root().join("docs/cli.md");
    let generated = Args::markdown_reference();
    if std::env::var_os("FLAGPOLE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/cli.md");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/cli.md is out of date; run FLAGPOLE_UPDATE_DOCS=1 cargo test -p flagpole --test it cli_docs"
    );
}
