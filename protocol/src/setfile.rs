//! Set files: a whole patch (modules, parameters, connections) in TOML.
//!
//! [`parse`] checks the entire file before anything is done with it, and every error
//! names the file, the line and what is wrong. [`SetFile::to_toml`] writes one back;
//! [`save_atomically`] replaces a file so that a crash never leaves half of one.
//!
//! ```
//! use modsynth_protocol::setfile;
//!
//! let text = r#"
//! [[module]]
//! id = "osc1"
//! type = "vco"
//! params = { freq = 110, wave = "saw" }
//!
//! [[connect]]
//! from = "osc1:out"
//! to = "system:playback_1"
//! "#;
//! let set = setfile::parse("demo.toml", text).unwrap();
//! assert_eq!(set.modules[0].id, "osc1");
//! assert_eq!(set.connections[0].to, "system:playback_1");
//! ```

use crate::osc::{check_port_name, Standby};
use modsynth_model::catalog::{self, runtime::LV2_PREFIX, Direction, ModuleSpec, Signal};
use modsynth_model::ccmap::{self, CcMap, Curve};
use modsynth_model::names::{check_module_id, is_worker_port, worker_port_error};
use modsynth_model::param::{self, Value};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::Path;
use toml::Spanned;

/// A checked set file.
#[derive(Debug, Clone, PartialEq)]
pub struct SetFile {
    /// Settings for a JACK server the launcher starts (ignored when one runs).
    pub jack: JackSettings,
    /// The modules, in file order.
    pub modules: Vec<SetModule>,
    /// The connections, in file order.
    pub connections: Vec<Connection>,
    /// `[[map]]`: CC mappings, checked against the modules of the set.
    pub maps: Vec<CcMap>,
    /// `[midi]`: where control MIDI comes from, and program changes.
    pub midi: MidiSettings,
}

/// `[midi]`: the MIDI input `modsynthd` reads CC maps and program changes from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MidiSettings {
    /// JACK MIDI output ports (a controller, `a2j:...`) connected to the
    /// supervisor's `midi_in` port.
    pub inputs: Vec<String>,
    /// Program number (1..128, as devices show them) -> set name in the sets
    /// directory, loaded as a diff when that program change arrives.
    pub program_sets: BTreeMap<u8, String>,
}

/// `[jack]`: how `scripts/live` starts a server when none runs.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct JackSettings {
    /// `dummy` or `alsa`; unset: ALSA when a sound card exists, else dummy.
    pub driver: Option<String>,
    /// Sample rate, Hz; unset: 48000.
    pub rate: Option<u32>,
    /// Frames per period; unset: 256.
    pub period: Option<u32>,
}

/// One module of a set.
#[derive(Debug, Clone, PartialEq)]
pub struct SetModule {
    /// The module's id.
    pub id: String,
    /// Its type.
    pub spec: &'static ModuleSpec,
    /// (index, value), checked against the catalog, in file order.
    pub params: Vec<(usize, f32)>,
    /// Whether it gets a hot standby (`standby = "none"` in the file: no).
    pub standby: Standby,
    /// An LV2 plugin's own state (`state = '''...'''`: the Turtle text lilv
    /// writes, see `modsynth_lv2::state`), checked by lilv when the file is read.
    pub plugin_state: Option<String>,
}

/// One connection: `module:port` or any JACK port name on either side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Connection {
    /// The output port.
    pub from: String,
    /// The input port.
    pub to: String,
}

/// What is wrong with a set file, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct SetError {
    /// The file, as given.
    pub file: String,
    /// 1-based; 0 when the problem is not at one place (a missing file).
    pub line: usize,
    /// What is wrong, for the user.
    pub message: String,
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

impl std::error::Error for SetError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    jack: Option<JackSettings>,
    #[serde(default)]
    module: Vec<Spanned<RawModule>>,
    #[serde(default)]
    connect: Vec<Spanned<RawConnect>>,
    #[serde(default)]
    map: Vec<Spanned<RawMap>>,
    midi: Option<RawMidi>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    cc: Spanned<i64>,
    channel: Option<Spanned<i64>>,
    module: Spanned<String>,
    param: Spanned<String>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    curve: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMidi {
    #[serde(default)]
    inputs: Vec<Spanned<String>>,
    #[serde(default)]
    program_sets: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    id: Spanned<String>,
    #[serde(rename = "type")]
    module_type: Spanned<String>,
    /// The plugin of `type = "lv2"`.
    uri: Option<Spanned<String>>,
    standby: Option<Spanned<String>>,
    #[serde(default)]
    params: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    /// An LV2 plugin's own state.
    state: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    from: Spanned<String>,
    to: Spanned<String>,
}

/// The largest set file read (1 MiB: the demo set is 2 KiB, 64 modules with every
/// parameter and connection about 40 KiB).
pub const MAX_SET_FILE: u64 = 1 << 20;

/// Where `modsynthd` keeps set files unless told otherwise (`--sets-dir`):
/// `$XDG_DATA_HOME/modsynth/sets`, else `~/.local/share/modsynth/sets`.
pub fn default_sets_dir() -> Option<std::path::PathBuf> {
    let nonempty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    nonempty("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| nonempty("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("modsynth/sets"))
}

/// Checks a set name as OSC `/set/load` and `/set/save` take it: one file name
/// inside the sets directory, so no sender can name a file outside it. No `/`,
/// not `.` or `..`, no leading `.` (temporary files), no control characters, at
/// most 255 bytes.
///
/// ```
/// use modsynth_protocol::setfile::check_set_name;
///
/// assert!(check_set_name("gig-2026.toml").is_ok());
/// for bad in ["../x", "/tmp/x", "a/b.toml", "..", ".hidden", "a\nb", ""] {
///     assert!(check_set_name(bad).is_err(), "{bad}");
/// }
/// ```
pub fn check_set_name(name: &str) -> Result<(), String> {
    let shown: String = name.chars().take(64).collect();
    if name.is_empty() || name.len() > 255 {
        Err("a set name is 1 to 255 bytes".into())
    } else if name.contains('/') || name.starts_with('.') {
        Err(format!(
            "{shown:?} is not a set name: give a file name in the sets directory \
             (no '/', not starting with '.'); `modsynth set load PATH` copies a file there"
        ))
    } else if name.chars().any(char::is_control) {
        Err(format!("set name {shown:?} holds a control character"))
    } else {
        Ok(())
    }
}

/// Reads and checks a set file.
pub fn load(path: &Path) -> Result<SetFile, SetError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SetError {
        file: name.clone(),
        line: 0,
        message: format!("cannot read it: {e}"),
    })?;
    parse(&name, &text)
}

/// Checks the text of a set file; `file` is used in error messages.
pub fn parse(file: &str, text: &str) -> Result<SetFile, SetError> {
    // Bytes, not str: a span that is not on a char boundary must not panic.
    let line_of = |offset: usize| {
        text.as_bytes()[..offset.min(text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    let err = |offset: usize, message: String| SetError {
        file: file.to_string(),
        line: line_of(offset),
        message,
    };
    let raw: RawSet = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(s.start));
        SetError {
            file: file.to_string(),
            line,
            message: e.message().to_string(),
        }
    })?;

    let mut modules = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &raw.module {
        let at = m.span().start;
        let m = m.get_ref();
        let id = m.id.get_ref();
        check_module_id(id).map_err(|e| err(m.id.span().start, e))?;
        if let Some(first) = seen.insert(id.clone(), line_of(at)) {
            return Err(err(
                m.id.span().start,
                format!("module id '{id}' is used twice (first on line {first})"),
            ));
        }
        let type_name = match (m.module_type.get_ref().as_str(), &m.uri) {
            ("lv2", Some(uri)) => format!("{LV2_PREFIX}{}", uri.get_ref()),
            ("lv2", None) => {
                return Err(err(
                    m.module_type.span().start,
                    format!("{id}: type = \"lv2\" needs uri = \"<plugin URI>\" (`modsynth plugins` lists them)"),
                ))
            }
            (_, Some(uri)) => {
                return Err(err(
                    uri.span().start,
                    format!("{id}: uri is for type = \"lv2\" only"),
                ))
            }
            (other, None) => other.to_string(),
        };
        let spec = catalog::lookup(&type_name).map_err(|e| {
            let at = m
                .uri
                .as_ref()
                .map_or(m.module_type.span().start, |u| u.span().start);
            err(at, e)
        })?;
        let standby = match m
            .standby
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span().start))
        {
            None | Some(("hot", _)) => Standby::Hot,
            Some(("none", _)) => Standby::None,
            Some((other, at)) => {
                return Err(err(
                    at,
                    format!("standby is \"hot\" or \"none\", not \"{other}\""),
                ))
            }
        };
        let mut params = Vec::new();
        for (name, value) in &m.params {
            let checked = match value.get_ref() {
                toml::Value::Float(v) => {
                    param::validate(spec, name.get_ref(), Value::Float(*v as f32))
                }
                toml::Value::Integer(v) => {
                    param::validate(spec, name.get_ref(), Value::Float(*v as f32))
                }
                toml::Value::String(s) => param::validate(spec, name.get_ref(), Value::Text(s)),
                other => {
                    return Err(err(
                        value.span().start,
                        format!(
                            "{id}.{} must be a number or a string, not a {}",
                            name.get_ref(),
                            other.type_str()
                        ),
                    ))
                }
            };
            params.push(checked.map_err(|e| err(name.span().start, e.to_string()))?);
        }
        let plugin_state = match (&m.state, spec.lv2_uri()) {
            (None, _) => None,
            (Some(state), None) => {
                return Err(err(
                    state.span().start,
                    format!(
                        "{id}: state is for LV2 plugins only (a {} has none)",
                        spec.name
                    ),
                ))
            }
            (Some(state), Some(uri)) => {
                modsynth_lv2::state::check(uri, state.get_ref()).map_err(|e| {
                    err(
                        state.span().start,
                        format!(
                            "{id}: {e}; remove the state to start the plugin from its defaults"
                        ),
                    )
                })?;
                Some(state.get_ref().clone())
            }
        };
        modules.push(SetModule {
            id: id.clone(),
            spec,
            params,
            standby,
            plugin_state,
        });
    }

    let mut connections = Vec::new();
    for c in &raw.connect {
        let c = c.get_ref();
        for (end, want) in [(&c.from, Direction::Out), (&c.to, Direction::In)] {
            let name = end.get_ref();
            check_port_name(name).map_err(|e| err(end.span().start, e))?;
            if is_worker_port(name) && !names_a_module(&modules, name) {
                return Err(err(end.span().start, worker_port_error(name)));
            }
            check_module_port(&modules, name, want).map_err(|e| err(end.span().start, e))?;
        }
        let midi = |name: &str| module_port(&modules, name).map(|p| p.signal == Signal::Midi);
        if let (Some(from), Some(to)) = (midi(c.from.get_ref()), midi(c.to.get_ref())) {
            if from != to {
                return Err(err(
                    c.to.span().start,
                    format!(
                        "'{}' and '{}' cannot be connected: one is a MIDI port, the other carries samples",
                        c.from.get_ref(),
                        c.to.get_ref()
                    ),
                ));
            }
        }
        connections.push(Connection {
            from: c.from.get_ref().clone(),
            to: c.to.get_ref().clone(),
        });
    }
    let mut maps: Vec<CcMap> = Vec::new();
    for m in &raw.map {
        let at = m.span().start;
        let m = m.get_ref();
        let cc = ccmap::check_cc(*m.cc.get_ref()).map_err(|e| err(m.cc.span().start, e))?;
        let channel = match &m.channel {
            Some(c) => ccmap::check_channel(*c.get_ref()).map_err(|e| err(c.span().start, e))?,
            None => None,
        };
        let id = m.module.get_ref();
        let spec = modules
            .iter()
            .find(|s| &s.id == id)
            .map(|s| s.spec)
            .ok_or_else(|| {
                err(
                    m.module.span().start,
                    format!("map to module '{id}', which the set does not have"),
                )
            })?;
        let range = match (&m.min, &m.max) {
            (Some(lo), Some(hi)) => Some((*lo.get_ref() as f32, *hi.get_ref() as f32)),
            (None, None) => None,
            _ => return Err(err(at, "a map gives both min and max, or neither".into())),
        };
        let curve = match &m.curve {
            Some(c) => Curve::parse(c.get_ref()).map_err(|e| err(c.span().start, e))?,
            None => Curve::Lin,
        };
        let map = CcMap::new(cc, channel, id, m.param.get_ref(), range, curve)
            .check(spec)
            .map_err(|e| err(at, e))?;
        if maps
            .iter()
            .any(|o| o.module == map.module && o.param == map.param)
        {
            return Err(err(
                at,
                format!("{}.{} is mapped twice", map.module, map.param),
            ));
        }
        maps.push(map);
    }
    if maps.len() > ccmap::MAX_MAPS {
        return Err(SetError {
            file: file.to_string(),
            line: 0,
            message: format!("{} maps; at most {}", maps.len(), ccmap::MAX_MAPS),
        });
    }

    let mut midi = MidiSettings::default();
    if let Some(raw_midi) = &raw.midi {
        for input in &raw_midi.inputs {
            check_port_name(input.get_ref()).map_err(|e| err(input.span().start, e))?;
            midi.inputs.push(input.get_ref().clone());
        }
        for (program, set) in &raw_midi.program_sets {
            let n = program
                .get_ref()
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=128).contains(n))
                .ok_or_else(|| {
                    err(
                        program.span().start,
                        format!(
                            "program_sets key '{}' is not a program number 1..128",
                            program.get_ref().chars().take(32).collect::<String>()
                        ),
                    )
                })?;
            check_set_name(set.get_ref()).map_err(|e| err(set.span().start, e))?;
            midi.program_sets.insert(n, set.get_ref().clone());
        }
    }
    Ok(SetFile {
        jack: raw.jack.unwrap_or_default(),
        modules,
        connections,
        maps,
        midi,
    })
}

/// Whether `name`'s client part is a module of this set.
fn names_a_module(modules: &[SetModule], name: &str) -> bool {
    name.split_once(':')
        .is_some_and(|(client, _)| modules.iter().any(|m| m.id == client))
}

/// The catalog port `name` stands for, if it is `<module of this set>:<port>`.
fn module_port(modules: &[SetModule], name: &str) -> Option<&'static catalog::PortSpec> {
    let (client, port) = name.split_once(':')?;
    modules.iter().find(|m| m.id == client)?.spec.port(port)
}

/// If `name` is `<module of this set>:<port>`, the port must exist and face the right
/// way; other names are JACK ports, checked when connecting.
fn check_module_port(modules: &[SetModule], name: &str, want: Direction) -> Result<(), String> {
    let Some((client, port)) = name.split_once(':') else {
        return Ok(());
    };
    let Some(m) = modules.iter().find(|m| m.id == client) else {
        return Ok(());
    };
    let (_, p) = m.spec.port_of(client, port)?;
    match (want, p.direction) {
        (Direction::Out, Direction::In) => {
            Err(format!("'{name}' is an input; `from` must be an output"))
        }
        (Direction::In, Direction::Out) => {
            Err(format!("'{name}' is an output; `to` must be an input"))
        }
        _ => Ok(()),
    }
}

impl SetFile {
    /// The set as TOML, in the format [`parse`] reads.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# modsynth set\n");
        if self.jack != JackSettings::default() {
            out.push_str("\n[jack]\n");
            if let Some(d) = &self.jack.driver {
                out.push_str(&format!("driver = {}\n", quote(d)));
            }
            if let Some(r) = self.jack.rate {
                out.push_str(&format!("rate = {r}\n"));
            }
            if let Some(p) = self.jack.period {
                out.push_str(&format!("period = {p}\n"));
            }
        }
        for m in &self.modules {
            match m.spec.lv2_uri() {
                Some(uri) => out.push_str(&format!(
                    "\n[[module]]\nid = {}\ntype = \"lv2\"\nuri = {}\n",
                    quote(&m.id),
                    quote(uri)
                )),
                None => out.push_str(&format!(
                    "\n[[module]]\nid = {}\ntype = {}\n",
                    quote(&m.id),
                    quote(m.spec.name)
                )),
            }
            if m.standby == Standby::None {
                out.push_str("standby = \"none\"\n");
            }
            let params: Vec<String> = m
                .params
                .iter()
                .map(|&(i, v)| {
                    let spec = &m.spec.params[i];
                    let value = if spec.is_enum() {
                        quote(spec.values[v as usize])
                    } else {
                        format!("{v}")
                    };
                    format!("{} = {value}", spec.name)
                })
                .collect();
            if !params.is_empty() {
                out.push_str(&format!("params = {{ {} }}\n", params.join(", ")));
            }
            if let Some(state) = &m.plugin_state {
                out.push_str(&format!("state = {}\n", multi_line(state)));
            }
        }
        for c in &self.connections {
            out.push_str(&format!(
                "\n[[connect]]\nfrom = {}\nto = {}\n",
                quote(&c.from),
                quote(&c.to)
            ));
        }
        for m in &self.maps {
            out.push_str(&format!("\n[[map]]\ncc = {}\n", m.cc));
            if let Some(ch) = m.channel {
                out.push_str(&format!("channel = {ch}\n"));
            }
            out.push_str(&format!(
                "module = {}\nparam = {}\n",
                quote(&m.module),
                quote(&m.param)
            ));
            if let Some((lo, hi)) = m.range {
                out.push_str(&format!("min = {}\nmax = {}\n", float(lo), float(hi)));
            }
            if m.curve != Curve::Lin {
                out.push_str(&format!("curve = {}\n", quote(m.curve.name())));
            }
        }
        if self.midi != MidiSettings::default() {
            out.push_str("\n[midi]\n");
            if !self.midi.inputs.is_empty() {
                let inputs: Vec<String> = self.midi.inputs.iter().map(|i| quote(i)).collect();
                out.push_str(&format!("inputs = [{}]\n", inputs.join(", ")));
            }
            if !self.midi.program_sets.is_empty() {
                let sets: Vec<String> = self
                    .midi
                    .program_sets
                    .iter()
                    .map(|(n, set)| format!("{n} = {}", quote(set)))
                    .collect();
                out.push_str(&format!("program_sets = {{ {} }}\n", sets.join(", ")));
            }
        }
        out
    }
}

/// `v` as a TOML float (`100.0`, not `100`: the set file's `min`/`max` are floats).
fn float(v: f32) -> String {
    let text = format!("{v}");
    if text.contains(['.', 'e', 'i', 'N']) {
        text
    } else {
        format!("{text}.0")
    }
}

/// `s` (a plugin state, Turtle) as a TOML multi-line literal string, as written
/// (`'''` then a newline, which TOML drops); a text such a string cannot hold
/// (with `'''` or a control character besides tab and newline) as a basic string.
fn multi_line(s: &str) -> String {
    let literal = !s.contains("'''")
        && !s.ends_with('\'')
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control());
    if literal {
        format!("'''\n{s}'''")
    } else {
        quote(s)
    }
}

/// `s` as a TOML basic string on one line: every control character escaped, so no
/// name can ever add a line of its own to a saved file (toml's own writer picks a
/// multi-line string for text with newlines).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Replaces `path` with `contents` atomically: a temporary file in the same directory,
/// flushed to disk, then renamed over the old one. On any failure the old file is
/// untouched and the temporary file is removed.
pub fn save_atomically(path: &Path, contents: &str) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot save {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[jack]
driver = "dummy"
period = 128

[[module]]
id = "osc1"
type = "vco"
params = { freq = 110, wave = "saw", gain = 0.5 }

[[module]]
id = "filt1"
type = "vcf"
standby = "none"
params = { cutoff = 800 }

[[connect]]
from = "osc1:out"
to = "filt1:in"

[[connect]]
from = "filt1:out"
to = "system:playback_1"

[[map]]
cc = 74
channel = 1
module = "filt1"
param = "cutoff"
min = 100.0
max = 8000
curve = "exp"

[[map]]
cc = 7
module = "osc1"
param = "gain"

[midi]
inputs = ["a2j:Keys [20] (capture): Keys MIDI 1"]
program_sets = { 1 = "verse.toml", 2 = "chorus.toml" }
"#;

    fn error(text: &str) -> String {
        parse("set.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn a_midi_port_connected_to_an_audio_port_is_refused_with_both_names() {
        let e = error(
            "[[module]]\nid = \"k\"\ntype = \"midi2cv\"\n\n[[module]]\nid = \"o\"\ntype = \"vco\"\n\n\
             [[connect]]\nfrom = \"o:out\"\nto = \"k:midi\"\n",
        );
        assert!(
            e.contains("'o:out' and 'k:midi' cannot be connected"),
            "{e}"
        );
        assert!(e.contains("set.toml:"), "{e}");
    }

    #[test]
    fn every_example_set_in_scripts_sets_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/sets");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                checked += 1;
            }
        }
        assert!(
            checked >= 3,
            "only {checked} example sets in {}",
            dir.display()
        );
    }

    #[test]
    fn a_good_set_parses_with_checked_values() {
        let set = parse("set.toml", GOOD).unwrap();
        assert_eq!(
            set.jack,
            JackSettings {
                driver: Some("dummy".into()),
                rate: None,
                period: Some(128)
            }
        );
        assert_eq!(set.modules.len(), 2);
        let mut params = set.modules[0].params.clone();
        params.sort_by_key(|p| p.0);
        assert_eq!(params, vec![(0, 110.0), (1, 1.0), (3, 0.5)]);
        assert_eq!(set.modules[1].standby, Standby::None);
        assert_eq!(set.connections.len(), 2);
        assert_eq!(set.maps.len(), 2);
        assert_eq!(set.maps[0].range, Some((100.0, 8000.0)));
        assert_eq!(
            set.maps[1].range,
            Some((0.0, 1.0)),
            "a map without min/max spans the range"
        );
        assert_eq!(set.midi.program_sets[&2], "chorus.toml");
    }

    #[test]
    fn saving_and_parsing_again_gives_the_same_set() {
        let set = parse("set.toml", GOOD).unwrap();
        let again = parse("again.toml", &set.to_toml()).unwrap();
        assert_eq!(again, set);
    }

    #[test]
    fn names_with_control_characters_never_become_lines_of_their_own() {
        let set = SetFile {
            jack: Default::default(),
            modules: vec![],
            maps: vec![],
            midi: Default::default(),
            connections: vec![Connection {
                from: "x:out\n[[module]]\nid = \"evil\"\r\u{1b}[2J\u{85}".into(),
                to: "system:playback_1\"\\".into(),
            }],
        };
        let text = set.to_toml();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text}");
        let back: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            back["connect"][0]["from"].as_str(),
            Some(set.connections[0].from.as_str())
        );
        assert_eq!(
            back["connect"][0]["to"].as_str(),
            Some(set.connections[0].to.as_str())
        );
        // And reading such a file refuses the name.
        assert!(error(&text).contains("control character"));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let cases = [
            ("[[module]]\nid = \"a\"\ntype = \"vcx\"\n", "set.toml:3: no module type 'vcx'"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\nparams = { frq = 1 }\n", "set.toml:4: vco has no parameter 'frq'"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\nparams = { freq = 1e9 }\n", "set.toml:4: vco.freq = 1000000000 is out of range"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\n\n[[module]]\nid = \"a\"\ntype = \"lfo\"\n", "set.toml:6: module id 'a' is used twice (first on line 1)"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\n[[connect]]\nfrom = \"a:outt\"\nto = \"x:y\"\n", "set.toml:5: a (vco) has no port 'outt'"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\n[[connect]]\nfrom = \"a:pitch\"\nto = \"x:y\"\n", "set.toml:5: 'a:pitch' is an input"),
            ("[[connect]]\nfrom = \"nocolon\"\nto = \"x:y\"\n", "set.toml:2: 'nocolon' is not a port name"),
            ("[[connect]]\nfrom = \"amp1:out\"\nto = \"qj-w09:in_1\"\n", "set.toml:3: qj-w09:in_1 is a modsynth worker port; name the module"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\n[[connect]]\nfrom = \"modsynth-w13:out_1\"\nto = \"a:pitch\"\n", "set.toml:5: modsynth-w13:out_1 is a modsynth worker port"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\nvolume = 3\n", "set.toml:"),
            ("[[module]\nid = 1\n", "set.toml:1:"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\n[[map]]\ncc = 120\nmodule = \"a\"\nparam = \"gain\"\n", "set.toml:5: CC 120 cannot be mapped"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\n[[map]]\ncc = 1\nchannel = 17\nmodule = \"a\"\nparam = \"gain\"\n", "set.toml:6: MIDI channel 17"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\n[[map]]\ncc = 1\nmodule = \"b\"\nparam = \"gain\"\n", "set.toml:6: map to module 'b'"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\n[[map]]\ncc = 1\nmodule = \"a\"\nparam = \"gain\"\ncurve = \"exp\"\n", "set.toml:4: an exp curve needs min and max above 0"),
            ("[[module]]\nid = \"a\"\ntype = \"vco\"\n[[map]]\ncc = 1\nmodule = \"a\"\nparam = \"gain\"\nmin = 0.5\n", "set.toml:4: a map gives both min and max"),
            ("[midi]\nprogram_sets = { 0 = \"a.toml\" }\n", "set.toml:2: program_sets key '0'"),
            ("[midi]\nprogram_sets = { 3 = \"../a.toml\" }\n", "set.toml:2: \"../a.toml\" is not a set name"),
        ];
        for (text, want) in cases {
            let got = error(text);
            assert!(
                got.starts_with(want),
                "for {text:?}\n got: {got}\nwant: {want}..."
            );
        }
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let e = load(Path::new("/nonexistent/set.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/set.toml: cannot read it"),
            "{e}"
        );
    }

    #[test]
    fn a_failed_save_leaves_the_old_file_intact() {
        let dir = std::env::temp_dir().join(format!("modsynth-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("set.toml");
        save_atomically(&path, "old").unwrap();
        save_atomically(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let e =
            save_atomically(Path::new("/proc/modsynth-cannot-write-here.toml"), "x").unwrap_err();
        assert!(e.contains("cannot save"), "{e}");
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_lv2_plugin_is_type_lv2_with_its_uri_and_is_written_back_so() {
        modsynth_lv2::install();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/sets/lv2-mix.toml");
        let set = load(Path::new(path)).unwrap();
        let lp = &set.modules[1];
        assert_eq!(
            lp.spec.lv2_uri(),
            Some("http://plugin.org.uk/swh-plugins/lowpass_iir")
        );
        let text = set.to_toml();
        assert!(
            text.contains("type = \"lv2\"\nuri = \"http://plugin.org.uk/swh-plugins/lowpass_iir\"")
        );
        assert_eq!(parse("again.toml", &text).unwrap(), set);
        for (bad, says) in [
            (
                "[[module]]\nid = \"a\"\ntype = \"lv2\"\n",
                "set.toml:3: a: type = \"lv2\" needs uri",
            ),
            (
                "[[module]]\nid = \"a\"\ntype = \"vco\"\nuri = \"x\"\n",
                "set.toml:4: a: uri is for type = \"lv2\" only",
            ),
            (
                "[[module]]\nid = \"a\"\ntype = \"lv2\"\nuri = \"urn:nothing\"\n",
                "set.toml:4: no LV2 plugin 'urn:nothing'",
            ),
        ] {
            let err = parse("set.toml", bad).unwrap_err().to_string();
            assert!(err.starts_with(says), "{err}");
        }
    }

    #[test]
    fn a_plugin_state_is_written_as_a_multi_line_string_read_back_as_is_and_refused_where_it_cannot_be(
    ) {
        modsynth_lv2::install();
        let state = "@prefix lv2: <http://lv2plug.in/ns/lv2core#> .\n@prefix pset: <http://lv2plug.in/ns/ext/presets#> .\n@prefix state: <http://lv2plug.in/ns/ext/state#> .\n\n<urn:modsynth:state>\n\ta pset:Preset ;\n\tlv2:appliesTo <http://plugin.org.uk/swh-plugins/lowpass_iir> ;\n\tstate:state [\n\t\t<urn:test#k> \"0.25\"^^<http://www.w3.org/2001/XMLSchema#float>\n\t] .\n";
        let text = format!(
            "[[module]]\nid = \"lp\"\ntype = \"lv2\"\nuri = \"http://plugin.org.uk/swh-plugins/lowpass_iir\"\nstate = \'\'\'\n{state}\'\'\'\n"
        );
        let set = parse("set.toml", &text).unwrap();
        assert_eq!(set.modules[0].plugin_state.as_deref(), Some(state));
        let written = set.to_toml();
        assert!(
            written.contains(&format!("state = \'\'\'\n{state}\'\'\'\n")),
            "{written}"
        );
        assert_eq!(parse("set.toml", &written).unwrap(), set);
        // A state a literal string cannot hold is written as a basic one.
        let mut odd = set.clone();
        odd.modules[0].plugin_state = Some(state.replace("0.25", "\'\'\'"));
        assert!(!odd.to_toml().contains("state = \'\'\'"));

        let other = state.replace("swh-plugins/lowpass_iir", "swh-plugins/delay_n");
        let huge = format!(
            "{state}#{}\n",
            "x".repeat(modsynth_lv2::state::MAX_STATE_BYTES)
        );
        let lp = "[[module]]\nid = \"lp\"\ntype = \"lv2\"\nuri = \"http://plugin.org.uk/swh-plugins/lowpass_iir\"\n";
        for (bad, says) in [
            (format!("{lp}state = \'\'\'\nnot turtle {{\n\'\'\'\n"), "set.toml:5: lp: the plugin state is not an LV2 state lilv can read"),
            (format!("{lp}state = \'\'\'\n{other}\'\'\'\n"), "set.toml:5: lp: the plugin state is for http://plugin.org.uk/swh-plugins/delay_n, not for http://plugin.org.uk/swh-plugins/lowpass_iir"),
            (format!("{lp}state = \'\'\'\n{huge}\'\'\'\n"), "set.toml:5: lp: the plugin state is"),
            (format!("{lp}state = 3\n"), "set.toml:5:"),
            ("[[module]]\nid = \"v\"\ntype = \"vco\"\nstate = \"x\"\n".to_string(), "set.toml:4: v: state is for LV2 plugins only"),
        ] {
            let err = parse("set.toml", &bad).unwrap_err().to_string();
            assert!(err.starts_with(says), "{err}");
        }
    }
}
