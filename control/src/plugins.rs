//! `modsynth plugins`: the installed LV2 plugins, as module types.
//!
//! One line per plugin: the type name to use (`lv2:<short name>` when that is
//! unique, else `lv2:<URI>`), its class, its name, and its ports counted by kind
//! (`2 in, 1 out, 1 cv in, 3 par`); `--json` gives every port with its range and
//! hints. Plugins modsynth cannot host are left out unless `--all`, which shows
//! why.

use modsynth_lv2::discover::{self, PluginInfo, PortKind};
use std::fmt::Write;

/// The listing, filtered by `filter` (a case-insensitive part of the URI, name
/// or class), as text or JSON.
pub fn listing(filter: Option<&str>, json: bool, all: bool) -> Result<String, String> {
    let plugins = discover::plugins();
    let wanted = |p: &PluginInfo| {
        let hostable = all || p.refused.is_none();
        let matches = filter.is_none_or(|f| {
            let f = f.to_lowercase();
            [&p.uri, &p.name, &p.class]
                .iter()
                .any(|s| s.to_lowercase().contains(&f))
        });
        hostable && matches
    };
    let shown: Vec<&PluginInfo> = plugins.iter().filter(|p| wanted(p)).collect();
    if json {
        let mut text = serde_json::to_string_pretty(&shown).map_err(|e| e.to_string())?;
        text.push('\n');
        return Ok(text);
    }
    let mut out = String::new();
    for p in &shown {
        let short = p.short_name();
        let unique = plugins.iter().filter(|q| q.short_name() == short).count() == 1;
        let type_name = if unique {
            format!("lv2:{short}")
        } else {
            format!("lv2:{}", p.uri)
        };
        let _ = write!(
            out,
            "{type_name:<24} {:<22} {:<28} {}",
            p.class,
            p.name,
            ports(p)
        );
        if let Some(why) = &p.refused {
            let _ = write!(out, "  (not hosted: {why})");
        }
        let _ = writeln!(out, "\n{:<24} {}", "", p.uri);
    }
    if shown.is_empty() {
        let _ = writeln!(
            out,
            "no LV2 plugin{} installed (Debian: apt install swh-lv2 mda-lv2 x42-plugins)",
            filter.map_or(String::new(), |f| format!(" matching '{f}'"))
        );
    }
    Ok(out)
}

/// `1 in, 1 out, 2 par`: the ports counted by kind.
fn ports(p: &PluginInfo) -> String {
    let kinds = [
        (PortKind::MidiIn, "midi in"),
        (PortKind::AudioIn, "in"),
        (PortKind::AudioOut, "out"),
        (PortKind::CvIn, "cv in"),
        (PortKind::CvOut, "cv out"),
        (PortKind::ControlIn, "par"),
        (PortKind::ControlOut, "meter"),
        (PortKind::Atom, "atom"),
    ];
    let parts: Vec<String> = kinds
        .iter()
        .map(|&(k, name)| (p.ports_of(k).count(), name))
        .filter(|&(n, _)| n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    parts.join(", ")
}
