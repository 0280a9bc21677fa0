//! The core's side of control MIDI: the `/map/*` requests, draining `midi_in`
//! and acting on what [`Midi`](super::midi::Midi) decides.

use super::midi::{Action, MIDI_IN_PORT};
use super::*;
use modsynth_model::ccmap::CcMap;

impl Core {
    /// The supervisor's MIDI input as a full JACK port name.
    pub fn midi_in_port(&self) -> String {
        format!("{}:{MIDI_IN_PORT}", self.config.instance)
    }

    pub(super) fn map_request(&mut self, from: ReplyTo, request: Request, fx: &mut impl Effects) {
        match request {
            Request::MapCc { map } => match self.check_map(map) {
                Ok(map) => {
                    let (id, param) = (map.module.clone(), map.param.clone());
                    match self.midi.map(map) {
                        Ok(()) => {
                            self.midi_listening_changed(fx);
                            fx.reply(
                                from,
                                osc::done("/map/cc", vec![osc::text(&id), osc::text(&param)]),
                            )
                        }
                        Err(e) => fx.reply(from, Fail::new("/map/cc", e).to_message()),
                    }
                }
                Err(e) => fx.reply(from, Fail::new("/map/cc", e).to_message()),
            },
            Request::Learn { map } => match self.check_map(map) {
                Ok(map) => {
                    // Nothing moved before this request is learned: what waits in
                    // the ring goes to the maps there are (or nowhere) first.
                    self.act_on_midi(fx);
                    if let Some(old) = self.midi.learn(map, fx.now()) {
                        if let Some(to) = self.learner.take() {
                            let reason =
                                format!("{}.{}: a newer learn replaced it", old.module, old.param);
                            fx.reply(to, Fail::new("/map/learn", reason).to_message());
                        }
                    }
                    self.learner = Some(from);
                    self.midi_listening_changed(fx);
                }
                Err(e) => fx.reply(from, Fail::new("/map/learn", e).to_message()),
            },
            Request::Unmap { id, param } => {
                if self.midi.unmap(&id, &param) {
                    fx.reply(
                        from,
                        osc::done("/map/unmap", vec![osc::text(&id), osc::text(&param)]),
                    )
                } else {
                    let reason =
                        format!("{id}.{param} is not mapped (`modsynth maps` lists the maps)");
                    fx.reply(from, Fail::new("/map/unmap", reason).to_message())
                }
            }
            Request::ListMaps => {
                let mut args = Vec::new();
                for m in self.midi.maps() {
                    let (min, max) = m.range.unwrap_or_default();
                    args.extend([
                        OscType::Int(m.cc as i32),
                        OscType::Int(m.channel.unwrap_or(0) as i32),
                        osc::text(&m.module),
                        osc::text(&m.param),
                        OscType::Float(min),
                        OscType::Float(max),
                        osc::text(m.curve.name()),
                    ]);
                }
                fx.reply(from, osc::message("/map/list.reply", args))
            }
            _ => {}
        }
    }

    /// A map checked against the module it names, which must exist.
    fn check_map(&self, map: CcMap) -> Result<CcMap, String> {
        let m = self
            .modules
            .get(&map.module)
            .ok_or_else(|| format!("no module '{}' (`modsynth ls` lists them)", map.module))?;
        map.check(m.spec)
    }

    /// Starts polling `midi_in` at once when something began to listen.
    pub(super) fn midi_listening_changed(&mut self, fx: &mut impl Effects) {
        if self.midi.listening() && self.next_midi_poll.is_none() {
            self.next_midi_poll = Some(fx.now());
        }
    }

    /// Drains `midi_in` when due and acts on what arrived; fails a learn that
    /// waited too long. Called from [`Core::tick`].
    pub(super) fn poll_midi(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        if let Some(map) = self.midi.expired_learn(now) {
            if let Some(to) = self.learner.take() {
                let reason = format!(
                    "{}.{}: no CC arrived at {} in {} s (is the controller connected to it?)",
                    map.module,
                    map.param,
                    self.midi_in_port(),
                    super::midi::LEARN_TIMEOUT.as_secs()
                );
                fx.reply(to, Fail::new("/map/learn", reason).to_message());
            }
        }
        if self.next_midi_poll.is_some_and(|t| now < t) {
            return;
        }
        if !self.midi.listening() {
            let _ = fx.read_midi();
            self.next_midi_poll = None;
            return;
        }
        self.next_midi_poll = Some(now + fx.midi_poll_interval());
        self.act_on_midi(fx);
    }

    /// Reads what arrived at `midi_in` and acts on it (nothing listening: drops it).
    fn act_on_midi(&mut self, fx: &mut impl Effects) {
        let messages = fx.read_midi();
        // Within one drain only the last value of each parameter matters: they
        // would all be applied at the same period start.
        let mut sets: Vec<(String, String, f32, u32)> = Vec::new();
        let mut loads = Vec::new();
        for msg in messages {
            let modules = &self.modules;
            for action in self
                .midi
                .on_message(msg, |id| modules.get(id).map(|m| m.spec))
            {
                match action {
                    Action::Set {
                        module,
                        param,
                        value,
                        frame,
                    } => {
                        sets.retain(|(m, p, _, _)| !(*m == module && *p == param));
                        sets.push((module, param, value, frame));
                    }
                    Action::Learned(map) => {
                        tracing::info!(
                            "learned CC {} on channel {} for {}.{}",
                            map.cc,
                            map.channel.unwrap_or(0),
                            map.module,
                            map.param
                        );
                        if let Some(to) = self.learner.take() {
                            fx.reply(
                                to,
                                osc::done(
                                    "/map/learn",
                                    vec![
                                        osc::text(&map.module),
                                        osc::text(&map.param),
                                        OscType::Int(map.cc as i32),
                                        OscType::Int(map.channel.unwrap_or(0) as i32),
                                    ],
                                ),
                            );
                        }
                    }
                    Action::LoadSet(set) => loads.push(set),
                }
            }
        }
        for (module, param, value, frame) in sets {
            let Some(index) = self
                .modules
                .get(&module)
                .and_then(|m| m.spec.param_index(&param))
            else {
                continue;
            };
            self.set_value(&module, index, value, frame, None, fx);
        }
        // Only the last program change of a drain: the one the performer ended on.
        if let Some(set) = loads.pop() {
            tracing::info!("program change: loading {set}");
            self.load_set(None, &set, true, false, fx);
        }
    }
}
