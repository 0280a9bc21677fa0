//! LV2 plugins' own state (the state extension) in sets.
//!
//! A plugin's state lives in the plugin, in its primary worker: `/set/save` asks
//! every playing plugin's primary for it (`SavePluginState`), waits for all the
//! answers (at most [`SAVE_DEADLINE`]) and then writes the file, the states in it.
//! A plugin that does not answer in time, or whose worker fails to save, is named
//! in the `/fail` and the file keeps the state the module was last given (or none);
//! the rest is saved. `/set/load` hands each state it brings to the create of its
//! module; the module keeps it, so every worker that later plays it (its standby,
//! a replacement after a crash) restores the same state before it plays. A crash
//! loop's fresh restart drops it with the rest of the state that made it crash.

use super::*;

/// How long `/set/save` waits for the plugins' states. Saving POD state takes
/// well under a millisecond; a worker busy with another request (a create's
/// catch-up of up to a minute of audio runs at many times real time) answers
/// after it.
pub const SAVE_DEADLINE: Duration = Duration::from_secs(3);

/// A `/set/save` waiting for plugin states.
struct Save {
    from: ReplyTo,
    path: String,
    /// Question token -> (worker asked, module id).
    waiting: HashMap<u64, (WorkerId, String)>,
    /// Modules whose state could not be had, with the reason.
    failures: Vec<String>,
    due: Instant,
}

/// The plugin states in flight: saves waiting for answers, and the states a set
/// load brought for the modules it creates.
#[derive(Default)]
pub struct PluginStates {
    saves: Vec<Save>,
    /// Module id -> the state its create restores (taken by the create).
    incoming: HashMap<String, String>,
}

impl PluginStates {
    /// Module `id`, about to be created by a set load, restores `state`.
    pub fn bring(&mut self, id: &str, state: String) {
        self.incoming.insert(id.to_string(), state);
    }

    /// The state a set load brought for module `id`, taken once.
    pub fn take(&mut self, id: &str) -> Option<String> {
        self.incoming.remove(id)
    }

    /// The earliest deadline of a save.
    pub fn deadline(&self) -> Option<Instant> {
        self.saves.iter().map(|s| s.due).min()
    }
}

impl Core {
    /// `/set/save`: asks the primary of every playing LV2 plugin for its state,
    /// then writes the set (at once if there is none to ask).
    pub(super) fn save_set(&mut self, from: ReplyTo, path: &str, fx: &mut impl Effects) {
        let asked: Vec<(String, WorkerId)> = self
            .modules
            .iter()
            .filter(|(id, m)| m.spec.lv2_uri().is_some() && !m.quarantined && !self.is_prepared(id))
            .map(|(id, m)| (id.clone(), m.worker))
            .collect();
        let mut save = Save {
            from,
            path: path.to_string(),
            waiting: HashMap::new(),
            failures: Vec::new(),
            due: fx.now() + SAVE_DEADLINE,
        };
        for (id, wid) in asked {
            let token = self.token();
            let sent = match self.workers.get(&wid) {
                Some(w) if wid != NO_WORKER => {
                    fx.send(&w.link, ToWorker::SavePluginState { token })
                }
                _ => false,
            };
            if sent {
                save.waiting.insert(token, (wid, id));
            } else {
                save.failures.push(format!(
                    "{id}: no worker plays it now (it is being replaced)"
                ));
            }
        }
        if save.waiting.is_empty() {
            self.write_set(save, fx);
        } else {
            self.plugin_states.saves.push(save);
        }
    }

    /// A worker answered `SavePluginState` `token`.
    pub(super) fn plugin_state_arrived(
        &mut self,
        token: u64,
        result: Result<Option<String>, String>,
        fx: &mut impl Effects,
    ) {
        let Some(i) = self
            .plugin_states
            .saves
            .iter()
            .position(|s| s.waiting.contains_key(&token))
        else {
            return; // late: its save was written without it
        };
        let (_, id) = self.plugin_states.saves[i]
            .waiting
            .remove(&token)
            .unwrap_or_default();
        match result {
            Ok(Some(state)) if state.len() <= modsynth_lv2::state::MAX_STATE_BYTES => {
                if let Some(m) = self.modules.get_mut(&id) {
                    m.plugin_state = Some(state);
                }
            }
            Ok(Some(state)) => self.plugin_states.saves[i].failures.push(format!(
                "{id}: its state is {} bytes, more than {} (not saved)",
                state.len(),
                modsynth_lv2::state::MAX_STATE_BYTES
            )),
            Ok(None) => {} // a plugin without the state extension
            Err(e) => self.plugin_states.saves[i]
                .failures
                .push(format!("{id}: {e}")),
        }
        if self.plugin_states.saves[i].waiting.is_empty() {
            let save = self.plugin_states.saves.remove(i);
            self.write_set(save, fx);
        }
    }

    /// Worker `wid` is gone: the states it owed will not come.
    pub(super) fn plugin_states_lost(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        let owed: Vec<u64> = self
            .plugin_states
            .saves
            .iter()
            .flat_map(|s| s.waiting.iter())
            .filter(|(_, (w, _))| *w == wid)
            .map(|(&t, _)| t)
            .collect();
        for token in owed {
            let reason = "its worker died before it answered".to_string();
            self.plugin_state_arrived(token, Err(reason), fx);
        }
    }

    /// Writes the saves whose deadline passed, without the states still missing.
    pub(super) fn expire_plugin_state_saves(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        while let Some(i) = self.plugin_states.saves.iter().position(|s| s.due <= now) {
            let mut save = self.plugin_states.saves.remove(i);
            let late: Vec<String> = save.waiting.drain().map(|(_, (_, id))| id).collect();
            for id in late {
                save.failures.push(format!(
                    "{id}: its plugin did not hand its state over within {} s",
                    SAVE_DEADLINE.as_secs()
                ));
            }
            self.write_set(save, fx);
        }
    }

    /// Writes the set a save asked for and answers it: `/done`, or `/fail` naming
    /// the modules whose current plugin state is not in the file.
    fn write_set(&mut self, mut save: Save, fx: &mut impl Effects) {
        let set = self.current_set(fx);
        save.failures.sort();
        let path = save.path;
        match fx.write_file(&path, &set.to_toml()) {
            Ok(()) if save.failures.is_empty() => {
                fx.reply(save.from, osc::done("/set/save", vec![osc::text(&path)]))
            }
            Ok(()) => {
                let reason = format!(
                    "{path}: written, but without the current plugin state of {} (the file has the state each was last loaded with, if any)",
                    save.failures.join("; ")
                );
                tracing::warn!("/set/save {reason}");
                fx.reply(save.from, Fail::new("/set/save", reason).to_message());
            }
            Err(e) => fx.reply(save.from, Fail::new("/set/save", e).to_message()),
        }
    }
}
