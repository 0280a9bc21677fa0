//! A plugin as a catalog entry: `lv2:<URI>`.
//!
//! Ports: the MIDI input (an atom input that takes MIDI: a JACK MIDI port), audio
//! inputs, then CV inputs, then audio outputs, then CV outputs, each in the
//! plugin's index order, named by their LV2 symbols. Parameters: the
//! control inputs in index order, named by their symbols, with the plugin's range
//! and default; an `lv2:enumeration` becomes a choice of its scale points'
//! labels (lower case, `_` for anything not a letter or digit), an `lv2:toggled`
//! the choice `off`/`on`, and both store the index of the choice like a
//! built-in enum. Plugin controls jump (no glide): a plugin smooths its controls
//! itself where it wants to, as under any other host. A control without a range
//! accepts ±[`UNBOUNDED`].

use crate::discover::{self, PluginInfo, PortInfo, PortKind};
use modsynth_model::catalog::{
    runtime::LV2_PREFIX, Direction, Kind, ModuleSpec, ParamSpec, PortSpec, Signal, Smoothing,
};
use std::sync::atomic::{AtomicU32, Ordering};

/// The range of a control input the plugin gives no bounds for.
pub const UNBOUNDED: f32 = 1.0e6;

/// The sample rate `lv2:sampleRate` ranges are scaled by, Hz (see
/// [`set_sample_rate`]).
static SAMPLE_RATE: AtomicU32 = AtomicU32::new(48_000);

/// Sets the sample rate plugin ranges given as fractions of it (`lv2:sampleRate`,
/// e.g. a cutoff of 0.0001..0.45) are scaled by, before any plugin type is
/// resolved: the JACK server's. Until then, 48 kHz (what `modsynth set check`
/// assumes without a server).
pub fn set_sample_rate(hz: u32) {
    if hz > 0 {
        SAMPLE_RATE.store(hz, Ordering::Relaxed);
    }
}

/// See [`set_sample_rate`].
pub fn sample_rate() -> u32 {
    SAMPLE_RATE.load(Ordering::Relaxed)
}

/// How a parameter's stored value becomes the plugin's control value.
#[derive(Clone, Debug, PartialEq)]
pub enum Mapping {
    /// The value as it is.
    Plain,
    /// Rounded to a whole number (`lv2:integer`).
    Integer,
    /// The stored index picks one of these values (enumeration or toggle).
    Choice(Vec<f32>),
}

impl Mapping {
    /// The control value for stored value `v` (already validated; a choice index
    /// out of range picks the nearest end, so nothing unchecked reaches the plugin).
    pub fn control_value(&self, v: f32) -> f32 {
        match self {
            Mapping::Plain => v,
            Mapping::Integer => v.round(),
            Mapping::Choice(values) => {
                let i = (v.max(0.0).round() as usize).min(values.len().saturating_sub(1));
                values.get(i).copied().unwrap_or(0.0)
            }
        }
    }
}

/// One parameter: which control port it drives and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Control {
    /// The plugin's port index.
    pub port: usize,
    /// How the stored value maps to the port's value.
    pub mapping: Mapping,
}

/// The controls of a plugin, in parameter order.
pub fn controls(info: &PluginInfo) -> Vec<Control> {
    info.ports_of(PortKind::ControlIn)
        .map(|p| Control {
            port: p.index,
            mapping: if !p.choices.is_empty() {
                Mapping::Choice(p.choices.iter().map(|c| c.1).collect())
            } else if p.toggled {
                Mapping::Choice(vec![0.0, 1.0])
            } else if p.integer {
                Mapping::Integer
            } else {
                Mapping::Plain
            },
        })
        .collect()
}

/// The catalog's resolver (see [`crate::install`]): `lv2:<short name or URI>`.
pub fn resolve(name: &str) -> Result<ModuleSpec, String> {
    let wanted = name.strip_prefix(LV2_PREFIX).unwrap_or(name);
    let info = discover::find(wanted)?;
    module_spec(&info)
}

/// The catalog entry of `info`, or why it cannot be hosted.
pub fn module_spec(info: &PluginInfo) -> Result<ModuleSpec, String> {
    if let Some(why) = &info.refused {
        return Err(format!("cannot host LV2 plugin {}: {why}", info.uri));
    }
    let order = [
        (PortKind::MidiIn, Direction::In, Signal::Midi),
        (PortKind::AudioIn, Direction::In, Signal::Audio),
        (PortKind::CvIn, Direction::In, Signal::Cv),
        (PortKind::AudioOut, Direction::Out, Signal::Audio),
        (PortKind::CvOut, Direction::Out, Signal::Cv),
    ];
    let ports: Vec<PortSpec> = order
        .iter()
        .flat_map(|&(kind, direction, signal)| {
            info.ports_of(kind).map(move |p| PortSpec {
                name: leak(port_name(p)),
                direction,
                signal,
                doc: leak(p.name.clone()),
            })
        })
        .collect();
    let params: Vec<ParamSpec> = info.ports_of(PortKind::ControlIn).map(param).collect();
    Ok(ModuleSpec {
        name: leak(format!("{LV2_PREFIX}{}", info.uri)),
        kind: Kind::Lv2,
        doc: leak(format!("{} ({}, LV2)", info.name, info.class)),
        ports: Box::leak(ports.into_boxed_slice()),
        params: Box::leak(params.into_boxed_slice()),
    })
}

/// The names of the control outputs (meters, latency reports) of the plugin
/// `uri`, in port order: what `/module/get` reads besides the parameters, at
/// these positions of the module's large buffer, which its primary rewrites every
/// period (see `Host::read_control_outputs`). Empty for an unknown plugin.
pub fn control_outputs(uri: &str) -> Vec<String> {
    discover::find(uri)
        .map(|info| info.ports_of(PortKind::ControlOut).map(port_name).collect())
        .unwrap_or_default()
}

fn port_name(p: &PortInfo) -> String {
    if p.symbol.is_empty() {
        format!("port{}", p.index)
    } else {
        p.symbol.clone()
    }
}

fn param(p: &PortInfo) -> ParamSpec {
    let name = leak(port_name(p));
    let doc = leak(p.name.clone());
    let choices: Option<Vec<String>> = if !p.choices.is_empty() {
        Some(p.choices.iter().map(|c| label(&c.0)).collect())
    } else if p.toggled {
        Some(vec!["off".into(), "on".into()])
    } else {
        None
    };
    if let Some(labels) = choices {
        let values: Vec<f32> = if p.choices.is_empty() {
            vec![0.0, 1.0]
        } else {
            p.choices.iter().map(|c| c.1).collect()
        };
        let default = p.default.unwrap_or(values[0]);
        let nearest = (0..values.len())
            .min_by(|&a, &b| {
                (values[a] - default)
                    .abs()
                    .total_cmp(&(values[b] - default).abs())
            })
            .unwrap_or(0);
        let labels: Vec<&'static str> = labels.into_iter().map(leak).collect();
        return ParamSpec {
            name,
            unit: "",
            min: 0.0,
            max: (labels.len() - 1) as f32,
            default: nearest as f32,
            values: Box::leak(labels.into_boxed_slice()),
            doc,
            smoothing: Smoothing::None,
        };
    }
    let scale = if p.sample_rate_relative {
        sample_rate() as f32
    } else {
        1.0
    };
    let min = p.min.map_or(-UNBOUNDED, |v| v * scale);
    let max = p.max.map_or(UNBOUNDED, |v| v * scale).max(min);
    let unit = match (p.integer, p.sample_rate_relative) {
        (true, _) => "integer",
        (false, true) => "Hz",
        (false, false) => "",
    };
    ParamSpec {
        name,
        unit,
        min,
        max,
        default: p.default.map_or(min, |v| v * scale).clamp(min, max),
        values: &[],
        doc,
        smoothing: Smoothing::None,
    }
}

/// A scale point's label as a choice name: lower case, `_` for the rest.
fn label(text: &str) -> String {
    let s: String = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// Catalog entries live as long as the process (see
/// `modsynth_model::catalog::runtime`): each plugin's is made once.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[cfg(test)]
mod tests {
    //! Against the Debian plugin packs `scripts/setup` installs (swh-lv2, mda-lv2).
    use super::*;

    #[test]
    fn a_sample_rate_relative_cutoff_is_in_hz_and_an_integer_control_says_so() {
        set_sample_rate(48_000);
        let lp = resolve("lv2:lowpass_iir").unwrap();
        assert_eq!(lp.name, "lv2:http://plugin.org.uk/swh-plugins/lowpass_iir");
        let names: Vec<&str> = lp.ports.iter().map(|p| p.name).collect();
        assert_eq!(names, ["input", "output"]);
        let cutoff = lp.param("cutoff").unwrap();
        // 0.0001..0.45 of the sample rate.
        assert!((cutoff.min - 4.8).abs() < 1e-3 && (cutoff.max - 21_600.0).abs() < 0.5);
        assert_eq!(cutoff.unit, "Hz");
        assert_eq!(lp.param("stages").unwrap().unit, "integer");
    }

    #[test]
    fn an_enumeration_takes_its_labels_and_maps_them_to_the_plugins_values() {
        let info = discover::find("http://drobilla.net/plugins/mda/Leslie").unwrap();
        let leslie = module_spec(&info).unwrap();
        let mode = leslie.param("mode").unwrap();
        assert_eq!(mode.values, ["stop", "slow", "fast"]);
        let mapping = &controls(&info)[0].mapping;
        let Mapping::Choice(values) = mapping else {
            panic!("{mapping:?}")
        };
        assert_eq!(mapping.control_value(2.0), values[2]);
        assert_eq!(
            mapping.control_value(99.0),
            values[2],
            "clamped to the last"
        );
    }

    #[test]
    fn an_atom_input_that_takes_midi_becomes_the_modules_midi_input() {
        let dx10 = resolve("lv2:DX10").unwrap();
        let midi = dx10.midi_input().expect("a MIDI input");
        assert_eq!(midi.name, "event_in");
        let outputs: Vec<&str> = dx10.output_ports().map(|p| p.name).collect();
        assert_eq!(outputs, ["left_out", "right_out"]);
        assert_eq!(dx10.input_ports().count(), 0, "no audio input");
    }

    #[test]
    fn plugins_modsynth_cannot_host_are_refused_with_the_reason() {
        let err = resolve("lv2:hermesFilter").unwrap_err();
        assert!(err.contains("52 control inputs"), "{err}");
        let err = resolve("lv2:no_such_plugin").unwrap_err();
        assert!(err.contains("modsynth plugins"), "{err}");
    }
}
