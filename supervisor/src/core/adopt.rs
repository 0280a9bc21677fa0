//! Taking back what runs: a new supervisor of an instance whose last one died adopts
//! its workers and rebuilds its whole state from them.
//!
//! What the workers tell ([`Playing`]: module, type, role, state segment, whether
//! they own it, ports, parameter values from the last published state) gives the
//! modules, their players and standbys; the JACK graph gives each module's
//! connections; [`Saved`] (kept in the state dir) gives what no worker knows: the
//! connections wanted, pending ones included, and which modules have no standby.
//! A standby that took its module over while no supervisor ran is the module's
//! primary now: it gets the module's names and a new standby, as after any failover.

use super::*;
use serde::{Deserialize, Serialize};

/// A running worker the new supervisor took back.
#[derive(Debug)]
pub struct AdoptedWorker {
    /// Its pool number, from its JACK client name `<instance>-wNN`.
    pub id: WorkerId,
    /// Its process, checked against its card's start time.
    pub pid: u32,
    /// Its JACK client name.
    pub client: String,
    /// The new channel to it.
    pub commands: ipc_channel::ipc::IpcSender<ToWorker>,
    /// What it plays; `None` for a spare.
    pub playing: Option<modsynth_model::protocol::Playing>,
}

/// What a new supervisor needs that no worker can tell it, kept in the state dir.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Connections to keep (`module:port` or JACK names), as `(from, to)`.
    pub connections: Vec<(String, String)>,
    /// Modules created with `standby none`.
    pub no_standby: Vec<String>,
    /// The CC maps (checked when they were made).
    #[serde(default)]
    pub maps: Vec<modsynth_model::ccmap::CcMap>,
    /// LV2 plugins' own states by module id (see `plugin_states`): what the
    /// workers that play them after the adoption restore.
    #[serde(default)]
    pub plugin_states: std::collections::BTreeMap<String, String>,
    /// Program number -> set name.
    #[serde(default)]
    pub program_sets: BTreeMap<u8, String>,
    /// Sets prepared for a switch (`/set/prepare`), so that `/set/switch` still
    /// finds them after a restart.
    #[serde(default)]
    pub prepared: Vec<SavedPrepared>,
}

impl Core {
    /// What to keep in the state dir for a supervisor that adopts this one's workers.
    pub fn saved(&self) -> Saved {
        Saved {
            connections: self
                .patch
                .wanted()
                .iter()
                .map(|c| (c.from.clone(), c.to.clone()))
                .collect(),
            no_standby: self
                .modules
                .iter()
                .filter(|(_, m)| m.standby == Standby::None)
                .map(|(id, _)| id.clone())
                .collect(),
            maps: self.midi.maps().to_vec(),
            plugin_states: self
                .modules
                .iter()
                .filter_map(|(id, m)| Some((id.clone(), m.plugin_state.clone()?)))
                .collect(),
            program_sets: self.midi.program_sets().clone(),
            prepared: self.saved_prepared(),
        }
    }

    /// New workers get ids (and JACK client names) above `id`.
    pub fn number_workers_above(&mut self, id: WorkerId) {
        self.pool.number_above(id);
    }

    /// Rebuilds the state from running `workers` (before [`Core::start`]):
    /// modules, players, standbys, values, connections, and `counters` as the last
    /// supervisor left them in `metrics.json`.
    pub fn adopt(
        &mut self,
        workers: Vec<AdoptedWorker>,
        saved: Saved,
        counters: Option<Counters>,
        fx: &mut impl Effects,
    ) {
        let now = fx.now();
        if let Some(counters) = counters {
            self.counters = counters;
            self.counters.shm_leaks = 0;
        }
        self.patch.want_only(
            saved
                .connections
                .into_iter()
                .map(|(from, to)| Connection { from, to }),
        );
        // Maps of modules that did not come back are dropped below (with the module).
        self.midi.set_maps(saved.maps);
        self.midi.set_program_sets(saved.program_sets);
        let mut claims: BTreeMap<String, Vec<(WorkerId, modsynth_model::protocol::Playing)>> =
            BTreeMap::new();
        for w in workers {
            self.pool.number_above(w.id);
            let link = WorkerLink {
                id: w.id,
                pid: w.pid,
                client: w.client,
                commands: w.commands,
                seat: None,
            };
            self.workers.insert(
                w.id,
                Worker {
                    link,
                    role: Role::Spare,
                    last_report: None,
                    report_asked: false,
                },
            );
            match w.playing {
                Some(playing) => claims
                    .entry(playing.id.clone())
                    .or_default()
                    .push((w.id, playing)),
                None => self.pool.put_back(w.id),
            }
        }
        let mut promoted = Vec::new();
        let prepared = saved.prepared;
        for (id, mut claimants) in claims {
            let spec = claimants
                .first()
                .and_then(|(_, p)| catalog::module(&p.module_type));
            let Some(spec) = spec else {
                for (wid, _) in claimants {
                    self.retire(wid, fx);
                }
                continue;
            };
            // The one playing: the owner of the state; else the one assigned as
            // primary; else anyone (it takes the module over from the dead owner).
            let player = claimants
                .iter()
                .position(|(_, p)| p.owner)
                .or_else(|| {
                    claimants
                        .iter()
                        .position(|(_, p)| p.role == WorkerRole::Primary)
                })
                .unwrap_or(0);
            let (wid, playing) = claimants.swap_remove(player);
            let mut params = spec.defaults();
            for (i, &v) in playing.params.iter().enumerate().take(spec.params.len()) {
                // The state is hostile input like any other: keep only values in range.
                let p = &spec.params[i];
                if v.is_finite() && (p.min..=p.max).contains(&v) {
                    params[i] = v;
                }
            }
            let standby = if saved.no_standby.contains(&id) {
                Standby::None
            } else {
                Standby::Hot
            };
            let mut module = Module {
                ports: playing.ports.clone(),
                playing_since: Some(now),
                ..Module::new(spec, wid, params, standby, playing.state.clone())
            };
            // Hostile input like the rest: a state too big is not kept (the
            // plugins that play it restored it already).
            module.plugin_state = saved
                .plugin_states
                .get(&id)
                .filter(|s| {
                    spec.lv2_uri().is_some() && s.len() <= modsynth_lv2::state::MAX_STATE_BYTES
                })
                .cloned();
            if let Some(w) = self.workers.get_mut(&wid) {
                w.role = Role::Primary(id.clone());
            }
            let was_standby = matches!(playing.role, WorkerRole::Standby { .. });
            for (other, p) in claimants {
                // A standby of the player stays one; anything else (a primary that
                // lost the module, a standby of a primary now dead) is let go.
                let standby_of_player = matches!(p.role, WorkerRole::Standby { primary_pid }
                    if self.workers.get(&wid).is_some_and(|w| w.link.pid == primary_pid));
                if standby_of_player && !p.owner && module.standby_worker.is_none() {
                    module.standby_worker = Some(other);
                    module.standby_ports = p.ports;
                    if let Some(w) = self.workers.get_mut(&other) {
                        w.role = Role::Standby(id.clone());
                    }
                } else {
                    self.retire(other, fx);
                }
            }
            if module.standby == Standby::Hot && module.standby_worker.is_none() {
                module.degraded_since = Some(now);
            }
            self.modules.insert(id.clone(), module);
            if was_standby {
                promoted.push(id);
            }
        }
        let gone: Vec<String> = (self.midi.maps().iter())
            .filter(|m| !self.modules.contains_key(&m.module))
            .map(|m| m.module.clone())
            .collect();
        for id in gone {
            self.midi.forget_module(&id);
        }
        self.midi_listening_changed(fx);
        // Connections after every module is known: the other end of a link is named
        // as a module port when it is one; standbys' ports carry mirrors, not the patch.
        let standby_ports: HashSet<String> = self
            .modules
            .values()
            .flat_map(|m| m.standby_ports.iter().cloned())
            .collect();
        let ids: Vec<String> = self.modules.keys().cloned().collect();
        for id in &ids {
            let ports = self.modules[id].ports.clone();
            let mut links = std::collections::BTreeSet::new();
            for (i, port) in ports.iter().enumerate() {
                for other in fx.connections(port) {
                    if !standby_ports.contains(&other) {
                        links.insert((i, self.modules.module_port_name(&other)));
                    }
                }
            }
            if let Some(m) = self.modules.get_mut(id) {
                m.links = links;
            }
        }
        // Connections made while no supervisor ran were not mirrored onto standbys:
        // mirror every link now (what is mirrored already stays as it is).
        let mut mirrors = Vec::new();
        for (id, m) in self.modules.iter() {
            for (i, other) in &m.links {
                let Some(spec) = m.spec.ports.get(*i) else {
                    continue;
                };
                let here = format!("{id}:{}", spec.name);
                mirrors.extend(match spec.direction {
                    catalog::Direction::Out => self.modules.standby_pairs(&here, other),
                    catalog::Direction::In => self.modules.standby_pairs(other, &here),
                });
            }
        }
        for (src, dst) in mirrors {
            let context = format!("mirroring {src} -> {dst} onto a standby");
            self.jack_patch_logged(true, &src, &dst, context, fx);
        }
        for id in &promoted {
            // Its primary died while no supervisor ran and it took the module over.
            tracing::warn!("module {id}: its standby took it over while no supervisor ran");
            self.counters.crash_count += 1;
            self.counters.failovers += 1;
            self.hand_over(id, fx);
        }
        tracing::info!(
            "adopted {} worker(s): {} module(s), {} spare(s)",
            self.workers.len(),
            self.modules.len(),
            self.pool.spares()
        );
        // Before the new standbys: those of a prepared set's modules start muted.
        self.adopt_prepared(prepared, fx);
        for id in ids {
            if self.modules.contains_key(&id) {
                self.add_standby(&id, fx);
            }
        }
        self.make_wanted_connections(fx);
    }
}
