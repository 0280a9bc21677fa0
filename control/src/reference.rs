//! The module reference, written from the catalog so it can never disagree with it.
//!
//! `modsynth modules` prints [`plain`]; the reference in `docs/modules.md` is
//! [`markdown`] (a test checks that docs/modules.md holds exactly this text).
//!
//! ```
//! let text = modsynth_control::reference::markdown();
//! assert!(text.contains("### `vco`"));
//! ```

use modsynth_model::catalog::{self, Direction, ModuleSpec, ParamSpec};
use std::fmt::Write;

fn range(p: &ParamSpec) -> String {
    if p.is_enum() {
        p.values.join(" \\| ")
    } else {
        format!("{}..{}", p.min, p.max)
    }
}

fn default(p: &ParamSpec) -> String {
    if p.is_enum() {
        p.values[p.default as usize].to_string()
    } else {
        p.default.to_string()
    }
}

fn port_list(m: &ModuleSpec, dir: Direction) -> String {
    let names: Vec<String> = m
        .ports
        .iter()
        .filter(|p| p.direction == dir)
        .map(|p| format!("`{}` ({}): {}", p.name, p.signal.name(), p.doc))
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join("; ")
    }
}

/// The whole reference as Markdown: one section per module with its ports and a
/// table of its parameters.
pub fn markdown() -> String {
    let mut out = String::new();
    for m in catalog::modules() {
        let _ = writeln!(out, "### `{}`\n\n{}\n", m.name, m.doc);
        let _ = writeln!(out, "- inputs: {}", port_list(m, Direction::In));
        let _ = writeln!(out, "- outputs: {}\n", port_list(m, Direction::Out));
        let _ = writeln!(
            out,
            "| param | range | default | unit | smoothing | meaning |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for p in m.params {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                p.name,
                range(p),
                default(p),
                p.unit,
                p.smoothing.describe(p.unit),
                p.doc
            );
        }
        out.push('\n');
    }
    out
}

/// The reference for a terminal: one block per module, one line per port and param.
pub fn plain(only: Option<&ModuleSpec>) -> String {
    let mut out = String::new();
    // One type asked for (an LV2 plugin's is not in the built-in list), or all.
    let all: Vec<&ModuleSpec> = match only {
        Some(m) => vec![m],
        None => catalog::modules().iter().collect(),
    };
    for m in all {
        let _ = writeln!(out, "{:<6} {}", m.name, m.doc);
        for p in m.ports {
            let dir = match p.direction {
                Direction::In => "in ",
                Direction::Out => "out",
            };
            let _ = writeln!(
                out,
                "  {dir} {:<10} {:<5} {}",
                p.name,
                p.signal.name(),
                p.doc
            );
        }
        for p in m.params {
            let _ = writeln!(
                out,
                "  par {:<10} {:<28} default {:<8} glide {:<7} {}",
                p.name,
                format!("{} {}", range(p).replace(" \\| ", "|"), p.unit).trim_end(),
                default(p),
                p.smoothing.describe(p.unit),
                p.doc
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// docs/modules.md's module reference is the generated one, so docs and code agree.
    /// To update it: `cargo run -p modsynth-control -- modules --markdown` and paste it
    /// between the markers.
    #[test]
    fn docs_module_reference_matches_the_catalog() {
        let doc = include_str!("../../docs/modules.md");
        let begin = "<!-- modules:begin -->\n";
        let end = "<!-- modules:end -->";
        let start = doc.find(begin).expect("modules.md has the begin marker") + begin.len();
        let stop = doc.find(end).expect("modules.md has the end marker");
        assert!(
            doc[start..stop] == super::markdown(),
            "docs/modules.md's module reference is stale: run `cargo run -p modsynth-control -- modules --markdown` and paste it between the markers"
        );
    }
}
