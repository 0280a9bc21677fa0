//! Which LV2 plugins are installed, and what modsynth can make of each.
//!
//! One lilv world per process, loaded on first use and kept (lilv reads every
//! bundle's Turtle files: that is the slow part). A plugin is described by
//! [`PluginInfo`]: its ports in index order and, when modsynth cannot host it,
//! the reason ([`PluginInfo::refused`]) in words a user can act on.

use livi::lilv;
use modsynth_model::catalog::{MAX_INPUTS, MAX_OUTPUTS, MAX_PARAMS};
use serde::Serialize;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The LV2 features a plugin may require here: what `livi` provides (URID map and
/// unmap, options with the block lengths and sample rate, bounded block length,
/// the worker schedule, loading its default state).
pub fn supported_features() -> Vec<&'static str> {
    let mut v: Vec<&str> = livi::Features::supported_features().into_iter().collect();
    v.sort_unstable();
    v
}

/// What a plugin port is, as modsynth sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// Audio samples in (a JACK audio port).
    AudioIn,
    /// Audio samples out.
    AudioOut,
    /// Control voltage in, at audio rate (a JACK audio port).
    CvIn,
    /// Control voltage out.
    CvOut,
    /// A control value in, once per run: a parameter.
    ControlIn,
    /// A control value out (a meter, a latency report).
    ControlOut,
    /// An atom sequence input that takes MIDI (`atom:supports midi:MidiEvent`):
    /// the module's JACK MIDI input.
    MidiIn,
    /// Any other atom port (an atom output, an input for time or patch messages
    /// only): not hosted yet.
    Atom,
    /// Something else modsynth does not know.
    Other,
}

/// One port of a plugin.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PortInfo {
    /// Its index in the plugin.
    pub index: usize,
    /// Its symbol (unique in the plugin, a valid identifier): the parameter or
    /// JACK port name.
    pub symbol: String,
    /// Its human name.
    pub name: String,
    /// What it is.
    pub kind: PortKind,
    /// Lowest value (controls), if the plugin says.
    pub min: Option<f32>,
    /// Highest value (controls), if the plugin says.
    pub max: Option<f32>,
    /// Default value (controls), if the plugin says.
    pub default: Option<f32>,
    /// `lv2:toggled`: off (0) or on (1).
    pub toggled: bool,
    /// `lv2:integer`: whole numbers only.
    pub integer: bool,
    /// `lv2:sampleRate`: `min`, `max` and `default` are fractions of the sample
    /// rate (a frequency in Hz is what the port takes).
    pub sample_rate_relative: bool,
    /// `lv2:enumeration` with its scale points: (label, value), in value order.
    pub choices: Vec<(String, f32)>,
    /// The port may be left unconnected (`lv2:connectionOptional`).
    pub optional: bool,
}

/// One installed plugin.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PluginInfo {
    /// Its URI, which names it everywhere (`lv2:<URI>` as a module type).
    pub uri: String,
    /// Its human name.
    pub name: String,
    /// Its class (`Filter Plugin`, `Delay Plugin`, ...).
    pub class: String,
    /// Its ports, in index order.
    pub ports: Vec<PortInfo>,
    /// Why modsynth cannot host it; `None` when it can.
    pub refused: Option<String>,
}

impl PluginInfo {
    /// The last segment of the URI (after `/`, `#` or `:`): the short name
    /// `lv2:<short>` accepts when no other plugin has it.
    pub fn short_name(&self) -> &str {
        short_name(&self.uri)
    }

    /// The ports of one kind, in index order.
    pub fn ports_of(&self, kind: PortKind) -> impl Iterator<Item = &PortInfo> {
        self.ports.iter().filter(move |p| p.kind == kind)
    }
}

/// The last segment of a URI (see [`PluginInfo::short_name`]).
pub fn short_name(uri: &str) -> &str {
    uri.rsplit(['/', '#', ':']).next().unwrap_or(uri)
}

/// This process's lilv world (plugins found, loaded once).
pub(crate) fn world() -> MutexGuard<'static, livi::World> {
    static WORLD: OnceLock<Mutex<livi::World>> = OnceLock::new();
    WORLD
        .get_or_init(|| Mutex::new(livi::World::new()))
        .lock()
        // Panics abort these processes: a poisoned lock cannot be seen half-done.
        .unwrap_or_else(|e| e.into_inner())
}

/// Every installed plugin, sorted by URI, hostable or not.
pub fn plugins() -> Vec<PluginInfo> {
    installed().to_vec()
}

/// The plugins as described once per process: looking a name up must stay cheap,
/// a type name comes from the network (describing 143 plugins took ~10 ms).
fn installed() -> &'static [PluginInfo] {
    static INSTALLED: OnceLock<Vec<PluginInfo>> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let world = world();
        let raw = world.raw();
        let uris = Uris::new(raw);
        let mut all: Vec<PluginInfo> = raw.plugins().iter().map(|p| describe(&p, &uris)).collect();
        all.sort_by(|a, b| a.uri.cmp(&b.uri));
        all
    })
}

/// The plugin a type name means: `<URI>` exactly, else a unique short name (the
/// URI's last segment; exact case first, then any case).
pub fn find(name: &str) -> Result<PluginInfo, String> {
    let all = installed();
    if let Some(p) = all.iter().find(|p| p.uri == name) {
        return Ok(p.clone());
    }
    let exact: Vec<&PluginInfo> = all.iter().filter(|p| p.short_name() == name).collect();
    let matches = if exact.is_empty() {
        all.iter()
            .filter(|p| p.short_name().eq_ignore_ascii_case(name))
            .collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "no LV2 plugin '{name}' is installed (`modsynth plugins` lists them; give the URI or its last segment)"
        )),
        many => {
            let uris: Vec<&str> = many.iter().map(|p| p.uri.as_str()).collect();
            Err(format!(
                "'{name}' names {} LV2 plugins, give the URI: {}",
                many.len(),
                uris.join(", ")
            ))
        }
    }
}

/// The lilv nodes a description asks about, made once.
struct Uris {
    audio: lilv::node::Node,
    control: lilv::node::Node,
    cv: lilv::node::Node,
    atom: lilv::node::Node,
    input: lilv::node::Node,
    output: lilv::node::Node,
    toggled: lilv::node::Node,
    integer: lilv::node::Node,
    enumeration: lilv::node::Node,
    optional: lilv::node::Node,
    sample_rate: lilv::node::Node,
    supports: lilv::node::Node,
    midi_event: lilv::node::Node,
}

impl Uris {
    fn new(world: &lilv::World) -> Uris {
        let lv2 = |s: &str| world.new_uri(&format!("http://lv2plug.in/ns/lv2core#{s}"));
        Uris {
            audio: lv2("AudioPort"),
            control: lv2("ControlPort"),
            cv: lv2("CVPort"),
            atom: world.new_uri("http://lv2plug.in/ns/ext/atom#AtomPort"),
            input: lv2("InputPort"),
            output: lv2("OutputPort"),
            toggled: lv2("toggled"),
            integer: lv2("integer"),
            enumeration: lv2("enumeration"),
            optional: lv2("connectionOptional"),
            sample_rate: lv2("sampleRate"),
            supports: world.new_uri("http://lv2plug.in/ns/ext/atom#supports"),
            midi_event: world.new_uri("http://lv2plug.in/ns/ext/midi#MidiEvent"),
        }
    }
}

fn describe(plugin: &lilv::plugin::Plugin, uris: &Uris) -> PluginInfo {
    let uri = plugin.uri().as_uri().unwrap_or("").to_string();
    let name = plugin.name().as_str().unwrap_or("").to_string();
    let class = plugin
        .class()
        .label()
        .as_str()
        .unwrap_or("Plugin")
        .to_string();
    let ports: Vec<PortInfo> = plugin.iter_ports().map(|p| port(&p, uris)).collect();
    let refused = refusal(plugin, &ports);
    PluginInfo {
        uri,
        name,
        class,
        ports,
        refused,
    }
}

fn port(p: &lilv::port::Port, uris: &Uris) -> PortInfo {
    let input = p.is_a(&uris.input);
    let output = p.is_a(&uris.output);
    let kind = if p.is_a(&uris.audio) {
        if input {
            PortKind::AudioIn
        } else {
            PortKind::AudioOut
        }
    } else if p.is_a(&uris.cv) {
        if input {
            PortKind::CvIn
        } else {
            PortKind::CvOut
        }
    } else if p.is_a(&uris.control) && (input || output) {
        if input {
            PortKind::ControlIn
        } else {
            PortKind::ControlOut
        }
    } else if p.is_a(&uris.atom) {
        let midi = p.value(&uris.supports).iter().any(|v| v == uris.midi_event);
        if input && midi {
            PortKind::MidiIn
        } else {
            PortKind::Atom
        }
    } else {
        PortKind::Other
    };
    let range = p.range();
    let float = |n: Option<lilv::node::Node>| {
        n.and_then(|n| n.as_float().or_else(|| n.as_int().map(|i| i as f32)))
            .filter(|v| v.is_finite())
    };
    let mut choices: Vec<(String, f32)> = Vec::new();
    if p.has_property(&uris.enumeration) {
        for point in p.scale_points().iter() {
            let label = point.label().as_str().unwrap_or("").to_string();
            let value = point.value();
            if let Some(v) = value
                .as_float()
                .or_else(|| value.as_int().map(|i| i as f32))
            {
                if v.is_finite() {
                    choices.push((label, v));
                }
            }
        }
        choices.sort_by(|a, b| a.1.total_cmp(&b.1));
    }
    PortInfo {
        index: p.index(),
        symbol: p
            .symbol()
            .and_then(|s| s.as_str().map(str::to_string))
            .unwrap_or_default(),
        name: p
            .name()
            .and_then(|s| s.as_str().map(str::to_string))
            .unwrap_or_default(),
        kind,
        min: float(range.minimum),
        max: float(range.maximum),
        default: float(range.default),
        toggled: p.has_property(&uris.toggled),
        integer: p.has_property(&uris.integer),
        sample_rate_relative: p.has_property(&uris.sample_rate),
        choices,
        optional: p.has_property(&uris.optional),
    }
}

/// Why modsynth cannot host `plugin`, if it cannot.
fn refusal(plugin: &lilv::plugin::Plugin, ports: &[PortInfo]) -> Option<String> {
    let supported = supported_features();
    let missing: Vec<String> = plugin
        .required_features()
        .iter()
        .filter_map(|f| f.as_uri().map(str::to_string))
        .filter(|f| !supported.contains(&f.as_str()))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "it requires LV2 features modsynth does not offer: {}",
            missing.join(", ")
        ));
    }
    let count = |kinds: &[PortKind]| ports.iter().filter(|p| kinds.contains(&p.kind)).count();
    let required = |kind: PortKind| ports.iter().any(|p| p.kind == kind && !p.optional);
    if let Some(p) = ports.iter().find(|p| p.kind == PortKind::Atom) {
        return Some(format!(
            "its atom port '{}' is an output or takes no MIDI: modsynth hosts atom inputs that take MIDI only",
            p.symbol
        ));
    }
    let midi_inputs = count(&[PortKind::MidiIn]);
    if midi_inputs > 1 {
        return Some(format!(
            "it has {midi_inputs} MIDI inputs, a module holds at most 1"
        ));
    }
    if required(PortKind::Other) {
        return Some("it has a port of a kind modsynth does not know".into());
    }
    let inputs = count(&[PortKind::AudioIn, PortKind::CvIn]);
    if inputs > MAX_INPUTS {
        return Some(format!(
            "it has {inputs} audio/CV inputs, a module holds at most {MAX_INPUTS}"
        ));
    }
    let outputs = count(&[PortKind::AudioOut, PortKind::CvOut]);
    if outputs > MAX_OUTPUTS {
        return Some(format!(
            "it has {outputs} audio/CV outputs, a module holds at most {MAX_OUTPUTS}"
        ));
    }
    if outputs == 0 {
        return Some("it has no audio or CV output".into());
    }
    let controls = count(&[PortKind::ControlIn]);
    if controls > MAX_PARAMS {
        return Some(format!(
            "it has {controls} control inputs, a module holds at most {MAX_PARAMS} parameters"
        ));
    }
    None
}
