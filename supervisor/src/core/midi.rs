//! Control MIDI: CC maps, MIDI learn and program changes.
//!
//! The supervisor's own JACK client has one MIDI input, `<instance>:midi_in`. Its
//! process callback copies every control change and program change into an
//! `rtrb` ring ([`MidiIn`]: frame and three bytes, nothing allocated); the core's
//! thread empties the ring every quarter period while anything listens (a map, a
//! learn, a program table) and turns each message into what [`Midi::on_message`]
//! decides: parameter changes sent to the workers exactly like `/module/set` (so
//! they get the parameter's smoothing, survive a failover and are replayed to a
//! new primary), a learned map, or a set to load. No thread is added on the way:
//! the core wakes for the ring as it wakes for its timers.
//!
//! Why here and not in the workers: the maps are the supervisor's state (saved in
//! `saved.json`, in set files, taken back after a restart), a CC may drive
//! parameters of several modules, and a worker would need a MIDI port and its
//! connection per mapped module, mirrored onto its standby. The cost is the hop:
//! measured CC -> parameter applied in the worker (bench `midi.cc_to_param`).
//!
//! ```
//! use modsynth_model::ccmap::{CcMap, Curve};
//! use modsynth_supervisor::core::midi::{Action, Midi, MidiIn};
//!
//! let vca = modsynth_model::catalog::module("vca").unwrap();
//! let mut midi = Midi::default();
//! let map = CcMap::new(7, None, "amp1", "gain", None, Curve::Lin).check(vca).unwrap();
//! midi.map(map).unwrap();
//! let cc = MidiIn { frame: 4096, status: 0xB2, data1: 7, data2: 127 };
//! let actions = midi.on_message(cc, |_| Some(vca));
//! assert_eq!(actions, vec![Action::Set { module: "amp1".into(), param: "gain".into(), value: 2.0, frame: 4096 }]); // gain's range is 0..2
//! ```

use modsynth_model::catalog::ModuleSpec;
use modsynth_model::ccmap::{self, CcMap};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The name of the supervisor's MIDI input port (`<instance>:midi_in`).
pub const MIDI_IN_PORT: &str = "midi_in";

/// How long a `/map/learn` waits for a CC before it fails.
pub const LEARN_TIMEOUT: Duration = Duration::from_secs(60);

/// One MIDI message read from `midi_in` by the process callback: plain data, so
/// the real-time thread copies it into the ring without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MidiIn {
    /// The JACK frame JACK timestamped it with.
    pub frame: u32,
    /// Status byte (`0xBn` control change, `0xCn` program change, n = channel - 1).
    pub status: u8,
    /// First data byte (CC number, program).
    pub data1: u8,
    /// Second data byte (CC value; 0 for a program change).
    pub data2: u8,
}

impl MidiIn {
    /// Whether the process callback keeps this message: control and program
    /// changes, the only ones the supervisor acts on.
    pub fn wanted(status: u8) -> bool {
        matches!(status & 0xF0, 0xB0 | 0xC0)
    }

    /// The channel, 1..16.
    pub fn channel(&self) -> u8 {
        (self.status & 0x0F) + 1
    }
}

/// What a MIDI message asks of the core.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Set `module`.`param` to `value` (an enum's value index), because of a CC
    /// that arrived on `frame`.
    Set {
        /// The module.
        module: String,
        /// The parameter.
        param: String,
        /// The value, inside the parameter's range.
        value: f32,
        /// The CC's JACK frame (the latency of the change is counted from it).
        frame: u32,
    },
    /// A learn finished: this map was made; answer whoever asked.
    Learned(CcMap),
    /// A program change named this set: load it (as a diff, freeing what it lacks).
    LoadSet(String),
}

/// The maps, the pending learn and the program table: the supervisor's MIDI
/// state. The core owns one; it survives failovers untouched (it lives here, not
/// in a worker) and is kept in `saved.json` for a supervisor that takes over.
#[derive(Debug, Default)]
pub struct Midi {
    /// Checked maps, at most one per module parameter.
    maps: Vec<CcMap>,
    /// The map a `/map/learn` waits to complete, and since when.
    learning: Option<(CcMap, Instant)>,
    /// Program number 1..128 -> set name.
    program_sets: BTreeMap<u8, String>,
}

impl Midi {
    /// Whether anything listens to `midi_in` (else the core drains it less often
    /// and drops what it finds).
    pub fn listening(&self) -> bool {
        !self.maps.is_empty() || self.learning.is_some() || !self.program_sets.is_empty()
    }

    /// Adds a checked map; a map of the same parameter is replaced.
    pub fn map(&mut self, map: CcMap) -> Result<(), String> {
        let same = |m: &CcMap| m.module == map.module && m.param == map.param;
        if let Some(i) = self.maps.iter().position(same) {
            self.maps[i] = map;
        } else if self.maps.len() >= ccmap::MAX_MAPS {
            return Err(format!(
                "{} maps already (at most {}): unmap one first",
                self.maps.len(),
                ccmap::MAX_MAPS
            ));
        } else {
            self.maps.push(map);
        }
        Ok(())
    }

    /// Removes the map of `module`.`param`; `false` if there was none.
    pub fn unmap(&mut self, module: &str, param: &str) -> bool {
        let before = self.maps.len();
        self.maps
            .retain(|m| !(m.module == module && m.param == param));
        self.maps.len() != before
    }

    /// Removes every map of a module that is gone (and a learn for it).
    pub fn forget_module(&mut self, module: &str) {
        self.maps.retain(|m| m.module != module);
        if self
            .learning
            .as_ref()
            .is_some_and(|(m, _)| m.module == module)
        {
            self.learning = None;
        }
    }

    /// The maps, in the order they were made.
    pub fn maps(&self) -> &[CcMap] {
        &self.maps
    }

    /// Replaces every map (a set loaded with replace, a supervisor taking over).
    pub fn set_maps(&mut self, maps: Vec<CcMap>) {
        self.maps = maps;
        self.maps.truncate(ccmap::MAX_MAPS);
    }

    /// The program table.
    pub fn program_sets(&self) -> &BTreeMap<u8, String> {
        &self.program_sets
    }

    /// Replaces the program table.
    pub fn set_program_sets(&mut self, sets: BTreeMap<u8, String>) {
        self.program_sets = sets;
    }

    /// Waits for the next CC to complete `map` (its CC and channel are taken from
    /// that message). Returns the learn it replaces, if one was waiting.
    pub fn learn(&mut self, map: CcMap, now: Instant) -> Option<CcMap> {
        self.learning.replace((map, now)).map(|(m, _)| m)
    }

    /// The learn waiting since before `now - LEARN_TIMEOUT`, taken out.
    pub fn expired_learn(&mut self, now: Instant) -> Option<CcMap> {
        match &self.learning {
            Some((_, since)) if now.duration_since(*since) >= LEARN_TIMEOUT => {
                self.learning.take().map(|(m, _)| m)
            }
            _ => None,
        }
    }

    /// What one message asks for. `spec_of` gives a module's type (`None`: the
    /// module is gone; its maps do nothing).
    pub fn on_message<'a>(
        &mut self,
        msg: MidiIn,
        spec_of: impl Fn(&str) -> Option<&'a ModuleSpec>,
    ) -> Vec<Action> {
        match msg.status & 0xF0 {
            0xC0 => {
                let program = msg.data1.min(127) + 1;
                self.program_sets
                    .get(&program)
                    .map(|set| Action::LoadSet(set.clone()))
                    .into_iter()
                    .collect()
            }
            0xB0 if msg.data1 <= ccmap::MAX_CC => {
                let mut actions = Vec::new();
                if let Some((mut map, _)) = self.learning.take() {
                    map.cc = msg.data1;
                    map.channel = Some(msg.channel());
                    // Checked when the learn was asked for; the module may be gone since.
                    if spec_of(&map.module).is_some() && self.map(map.clone()).is_ok() {
                        actions.push(Action::Learned(map));
                    }
                }
                for m in self
                    .maps
                    .iter()
                    .filter(|m| m.listens_to(msg.channel(), msg.data1))
                {
                    if let Some(spec) = spec_of(&m.module) {
                        actions.push(Action::Set {
                            module: m.module.clone(),
                            param: m.param.clone(),
                            value: m.value(spec, msg.data2),
                            frame: msg.frame,
                        });
                    }
                }
                actions
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modsynth_model::catalog;
    use modsynth_model::ccmap::Curve;

    fn cc(channel: u8, number: u8, value: u8) -> MidiIn {
        MidiIn {
            frame: 100,
            status: 0xB0 | (channel - 1),
            data1: number,
            data2: value,
        }
    }

    fn spec(_: &str) -> Option<&'static ModuleSpec> {
        catalog::module("vco")
    }

    #[test]
    fn a_learn_takes_the_next_cc_and_its_channel_and_the_map_then_follows_it() {
        let mut midi = Midi::default();
        let map = CcMap::new(0, None, "o", "gain", None, Curve::Lin)
            .check(catalog::module("vco").unwrap())
            .unwrap();
        assert!(midi.learn(map, Instant::now()).is_none());
        let actions = midi.on_message(cc(3, 21, 0), spec);
        assert!(matches!(&actions[0], Action::Learned(m) if m.cc == 21 && m.channel == Some(3)));
        assert!(matches!(&actions[1], Action::Set { value, .. } if *value == 0.0));
        let actions = midi.on_message(cc(3, 21, 127), spec);
        assert!(matches!(&actions[..], [Action::Set { value, .. }] if *value == 1.0));
        assert!(
            midi.on_message(cc(4, 21, 127), spec).is_empty(),
            "another channel"
        );
        assert!(
            midi.on_message(cc(3, 22, 127), spec).is_empty(),
            "another CC"
        );
    }

    #[test]
    fn channel_mode_messages_and_gone_modules_change_nothing() {
        let mut midi = Midi::default();
        let map = CcMap::new(0, None, "o", "gain", None, Curve::Lin)
            .check(catalog::module("vco").unwrap())
            .unwrap();
        midi.learn(map, Instant::now());
        assert!(
            midi.on_message(cc(1, 123, 0), spec).is_empty(),
            "All Notes Off"
        );
        assert!(midi.listening(), "the learn still waits");
        assert!(midi.on_message(cc(1, 5, 0), |_| None).is_empty());
        assert!(midi.maps().is_empty());
    }

    #[test]
    fn program_changes_name_sets_by_the_number_devices_show() {
        let mut midi = Midi::default();
        midi.set_program_sets([(1, "verse.toml".to_string())].into());
        let pc = |program| MidiIn {
            frame: 0,
            status: 0xC5,
            data1: program,
            data2: 0,
        };
        assert_eq!(
            midi.on_message(pc(0), spec),
            vec![Action::LoadSet("verse.toml".into())]
        );
        assert!(midi.on_message(pc(1), spec).is_empty());
    }

    #[test]
    fn a_learn_expires_and_a_map_of_the_same_parameter_replaces_the_old_one() {
        let vco = catalog::module("vco").unwrap();
        let mut midi = Midi::default();
        let t0 = Instant::now();
        midi.learn(CcMap::new(0, None, "o", "gain", None, Curve::Lin), t0);
        assert!(midi.expired_learn(t0 + Duration::from_secs(1)).is_none());
        assert!(midi.expired_learn(t0 + LEARN_TIMEOUT).is_some());
        assert!(!midi.listening());
        for n in [1, 2] {
            let m = CcMap::new(n, None, "o", "gain", None, Curve::Lin)
                .check(vco)
                .unwrap();
            midi.map(m).unwrap();
        }
        assert_eq!(midi.maps().len(), 1);
        assert_eq!(midi.maps()[0].cc, 2);
        midi.forget_module("o");
        assert!(midi.maps().is_empty());
    }
}
