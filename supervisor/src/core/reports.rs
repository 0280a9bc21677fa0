//! What the core tells the outside: `/status`, `/sync`, and what the
//! shared-memory registry should say.

use super::*;

impl Core {
    pub(super) fn playing_workers(&self) -> Vec<WorkerId> {
        let mut ids: Vec<WorkerId> = self.modules.values().map(|m| m.worker).collect();
        ids.sort_unstable();
        ids
    }

    pub(super) fn sync(&mut self, from: ReplyTo, sync_id: i32, fx: &mut impl Effects) {
        // Values held back (a flood faster than a period) were sent before the
        // sync: they go out first, so the sync covers them.
        self.send_held(true, fx);
        let request_token = self.token();
        let mut waiting = HashSet::new();
        for wid in self.playing_workers() {
            if let Some(w) = self.workers.get(&wid) {
                let token = self.requests.ask(request_token, wid);
                if fx.send(&w.link, ToWorker::Sync { token }) {
                    waiting.insert(token);
                } else {
                    self.requests.answered(token);
                }
            }
        }
        self.requests.insert(
            request_token,
            Pending::Sync {
                from,
                sync_id,
                waiting,
            },
        );
        self.settle(request_token, fx);
    }

    pub(super) fn status(&mut self, from: ReplyTo, fx: &mut impl Effects) {
        let request_token = self.token();
        let mut waiting = HashSet::new();
        // Workers on their way out would answer nothing; ask the ones that serve.
        let mut ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| matches!(w.role, Role::Spare | Role::Primary(_) | Role::Freeing))
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        for wid in ids {
            let token = self.requests.ask(request_token, wid);
            if fx.send(&self.workers[&wid].link, ToWorker::Report { token }) {
                waiting.insert(token);
                if let Some(w) = self.workers.get_mut(&wid) {
                    w.report_asked = true;
                }
            } else {
                self.requests.answered(token);
            }
        }
        let due = fx.now() + STATUS_DEADLINE;
        self.requests
            .insert(request_token, Pending::Status { from, waiting, due });
        self.settle(request_token, fx);
    }

    /// Answers every `/status` past [`STATUS_DEADLINE`] with what its late
    /// workers reported last.
    pub(super) fn answer_late_statuses(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        let late = self
            .requests
            .tokens(|p| matches!(p, Pending::Status { due, .. } if *due <= now));
        for request in late {
            let unanswered = self.requests.stop_waiting(request);
            tracing::debug!("status answered without {unanswered} late worker report(s)");
            self.settle(request, fx);
        }
    }

    /// Answers a fanned-out request once nothing is outstanding.
    pub(super) fn settle(&mut self, request_token: u64, fx: &mut impl Effects) {
        if !self.requests.settled(request_token) {
            return;
        }
        match self.requests.remove(request_token) {
            Some(Pending::Sync { from, sync_id, .. }) => {
                fx.reply(from, osc::message("/synced", vec![OscType::Int(sync_id)]));
            }
            Some(Pending::Status { from, .. }) => {
                let mut report = self.status_report();
                report.traffic = fx.traffic();
                let json = serde_json::to_string(&report).unwrap_or_default();
                fx.reply(from, osc::message("/status.reply", vec![osc::text(&json)]));
            }
            _ => {}
        }
    }

    /// What the shared-memory registry should say now: the state segment of every
    /// module, owned by the worker playing it, and every worker with its role. The
    /// runtime writes it to `registry.json` whenever it changes.
    pub fn registry_view(&self) -> RegistryView {
        let segments = self
            .modules
            .iter()
            .filter(|(_, m)| !m.quarantined)
            .map(|(id, m)| RegisteredSegment {
                module: id.clone(),
                segment: m.state.clone(),
                owner_pid: self.workers.get(&m.worker).map_or(0, |w| w.link.pid),
            })
            .collect();
        let mut workers: Vec<RegisteredWorker> = self
            .workers
            .values()
            .filter_map(|w| {
                let (role, module) = match &w.role {
                    Role::Spare => (RegisteredRole::Spare, None),
                    Role::Primary(id) => (RegisteredRole::Primary, Some(id.clone())),
                    Role::Standby(id) => (RegisteredRole::Standby, Some(id.clone())),
                    // A host is listed by its seats that stand by or play.
                    Role::Freeing
                    | Role::Retiring
                    | Role::Stopping
                    | Role::Host
                    | Role::EmptySeat => return None,
                };
                Some(RegisteredWorker {
                    pid: w.link.pid,
                    jack_client: w.link.client.clone(),
                    role,
                    module,
                })
            })
            .collect();
        workers.sort_by_key(|w| w.pid);
        RegistryView { segments, workers }
    }

    /// Everything `/status` reports.
    pub fn status_report(&self) -> StatusReport {
        let modules = self
            .modules
            .iter()
            .map(|(id, m)| {
                let w = self.workers.get(&m.worker);
                let r = w.and_then(|w| w.last_report.clone()).unwrap_or_default();
                let standby = m
                    .standby_worker
                    .filter(|_| !m.standby_ports.is_empty())
                    .and_then(|s| self.workers.get(&s));
                ModuleStatus {
                    id: id.clone(),
                    module_type: m.spec.name.to_string(),
                    role: if m.quarantined {
                        ModuleRole::Quarantined
                    } else if m.recovering_since.is_some() && w.is_none() {
                        ModuleRole::Recovering
                    } else {
                        ModuleRole::Primary
                    },
                    pid: w.map_or(0, |w| w.link.pid),
                    jack_client: w.map_or_else(String::new, |w| w.link.client.clone()),
                    standby_worker: standby.map(|s| StandbyWorker {
                        client: s.link.client.clone(),
                        pid: s.link.pid,
                    }),
                    ports: m
                        .spec
                        .ports
                        .iter()
                        .zip(&m.ports)
                        .map(|(spec, real)| (spec.name.to_string(), real.clone()))
                        .collect(),
                    standby: matches!(m.standby, Standby::Hot),
                    in_seat: w.is_some_and(|w| w.link.seat.is_some()),
                    report_late: w.is_some_and(|w| w.report_asked),
                    params: r.params,
                    latency_samples: [r.latency_p50, r.latency_p95, r.latency_p99],
                    latencies_unrecorded: r.latencies_unrecorded,
                    xruns: r.xruns,
                    dsp_load: r.dsp_load,
                    cpu_percent: r.cpu_percent,
                    rss_kib: r.rss_kib,
                    non_finite: r.non_finite,
                }
            })
            .collect();
        StatusReport {
            pool_size: self.config.pool,
            spare_ready: self.pool.spares(),
            workers: self.processes(),
            standby_hosts: self.seats.hosts(),
            free_seats: self.seats.free(),
            modules,
            counters: self.counters.clone(),
            traffic: Default::default(),
        }
    }
}
