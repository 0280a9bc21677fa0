//! The warm pool: spares arriving, kept, retired, and refilled a few at a time.

use super::*;

impl Core {
    pub(super) fn spawned(&mut self, new: NewWorker, fx: &mut impl Effects) {
        self.starting.remove(&new.id);
        self.spawn_failures_in_a_row = 0;
        self.counters
            .spawn_time_ms
            .record(new.spawn_time.as_secs_f64() * 1e3);
        let link = WorkerLink {
            id: new.id,
            pid: new.pid,
            client: new.client,
            commands: new.commands,
        };
        self.workers.insert(
            new.id,
            Worker {
                link,
                role: Role::Spare,
                last_report: None,
            },
        );
        if self.shutting_down {
            self.stop_next_workers(fx);
            return;
        }
        self.ready.push_back(new.id);
        self.notify(
            fx,
            osc::message("/pool/spare", vec![OscType::Int(self.ready.len() as i32)]),
        );
        self.serve_one(fx);
        self.refill(fx);
    }

    /// A spare just became ready: gives it to whoever waits for one. A module that
    /// lost its primary goes first, then a create that waited for a spare, then a
    /// module without its standby.
    pub(super) fn serve_one(&mut self, fx: &mut impl Effects) {
        if let Some((id, fresh)) = self.needs_replacement.pop_first() {
            self.replace(&id, fresh, fx);
        } else if let Some((from, request, started)) = self.waiting.pop_front() {
            self.counters.cold_creates += 1;
            self.create(from, request, started, fx);
        } else if let Some(id) = self.needs_standby.pop_first() {
            self.add_standby(&id, fx);
        }
    }

    /// Spares that requests known now will take: waiting creates (two each with a
    /// hot standby), replacements, and the standbys of modules that have none yet
    /// (including those whose primary is still being assigned: a set load's
    /// standbys are known as soon as its creates are).
    fn demand(&self) -> usize {
        let creates: usize = self
            .waiting
            .iter()
            .map(|(_, r, _)| match r {
                Request::New {
                    standby: Standby::Hot,
                    ..
                } => 2,
                _ => 1,
            })
            .sum();
        let standbys = self
            .modules
            .values()
            .filter(|m| m.standby == Standby::Hot && m.standby_worker.is_none() && !m.quarantined)
            .count();
        creates + self.needs_replacement.len() + standbys
    }

    /// A worker let its module go (ports unregistered, names and properties
    /// removed): it is reused, first by whoever waits for a spare, instead of
    /// closing its JACK client and starting a new one. A `set load --replace`
    /// frees the old set's workers while the new set's creates wait, and a JACK
    /// client closed and opened again costs jackd2 two passes over every client
    /// (that is how all 32 creates of a replace failed in issue 18). Surplus spares
    /// are kept up to [`MAX_SPARES_FACTOR`] times the pool beyond what is waited
    /// for; only beyond that are they retired (closing a JACK client is a
    /// synchronous notification to every client and slowed creates running at the
    /// same time, measured).
    pub(super) fn worker_freed(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        let keep = MAX_SPARES_FACTOR * self.config.pool + self.demand();
        if self.shutting_down || self.ready.len() >= keep {
            return self.retire(wid, fx);
        }
        self.make_spare(wid);
        self.serve_one(fx);
    }

    /// A worker could not be started. Nothing fails at once: the start is tried
    /// again after a backoff (see [`SPAWN_RETRY_BACKOFF`]). Only when starts keep
    /// failing ([`MAX_SPAWN_FAILURES_IN_A_ROW`]) and no spare is on its way does
    /// the create that waited longest fail, with the reason; each other waiting
    /// create gets a try of its own before it can fail too. So one spare that
    /// could not open its JACK client in time fails no create, and a broken
    /// installation fails them one by one, each with the reason, never spinning.
    pub(super) fn spawn_failed(&mut self, id: WorkerId, reason: String, fx: &mut impl Effects) {
        tracing::error!("worker w{id:02} did not start: {reason}");
        self.starting.remove(&id);
        self.counters.spawn_failures += 1;
        self.spawn_failures_in_a_row += 1;
        if self.spawn_failures_in_a_row >= MAX_SPAWN_FAILURES_IN_A_ROW
            && self.ready.is_empty()
            && self.starting.is_empty()
        {
            if let Some((from, Request::New { id, .. }, _)) = self.waiting.pop_front() {
                let tries = self.spawn_failures_in_a_row;
                let why = format!("no worker could be started ({tries} tries in a row): {reason}");
                self.create_failed(from, &id, &why, fx);
            }
            if !self.waiting.is_empty() {
                self.spawn_failures_in_a_row = MAX_SPAWN_FAILURES_IN_A_ROW - 1;
            }
        }
        self.last_spawn_error = Some(reason);
        let doublings = self.spawn_failures_in_a_row.saturating_sub(1).min(8);
        let backoff = (SPAWN_RETRY_BACKOFF * 2u32.pow(doublings)).min(SPAWN_RETRY_MAX);
        let due = fx.now() + backoff;
        self.refill_after = Some(self.refill_after.map_or(due, |t| t.min(due)));
    }

    /// Fails the creates that have waited for a spare longer than
    /// [`CREATE_WAIT_LIMIT`], each alone, with the last spawn failure as reason.
    pub(super) fn expire_waiting(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        while let Some((_, _, started)) = self.waiting.front() {
            if now.duration_since(*started) < CREATE_WAIT_LIMIT {
                break;
            }
            let Some((from, request, _)) = self.waiting.pop_front() else {
                break;
            };
            if let Request::New { id, .. } = request {
                let why = match &self.last_spawn_error {
                    Some(e) => format!(
                        "no spare within {} s (last worker start failed: {e})",
                        CREATE_WAIT_LIMIT.as_secs()
                    ),
                    None => format!("no spare within {} s", CREATE_WAIT_LIMIT.as_secs()),
                };
                self.create_failed(from, &id, &why, fx);
            }
        }
    }

    /// During shutdown: keeps [`MAX_CONCURRENT_SPAWNS`] workers closing at a time.
    /// Many JACK clients closing at once stall jackd2 (seen: 13 of 15 hung in
    /// `jack_client_close` for over 3 s), one or two at a time close in ~20 ms each.
    pub(super) fn stop_next_workers(&mut self, fx: &mut impl Effects) {
        let closing = self
            .workers
            .values()
            .filter(|w| w.role == Role::Stopping)
            .count();
        let mut ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.role != Role::Stopping)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        for id in ids
            .into_iter()
            .take(MAX_CONCURRENT_SPAWNS.saturating_sub(closing))
        {
            if let Some(w) = self.workers.get_mut(&id) {
                w.role = Role::Stopping;
                if !fx.send(&w.link, ToWorker::Shutdown) {
                    tracing::debug!("worker {} is already gone", w.link.client);
                }
            }
        }
    }

    /// Puts a worker without a module back in the ready queue (once).
    pub(super) fn make_spare(&mut self, wid: WorkerId) {
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Spare;
            if !self.ready.contains(&wid) {
                self.ready.push_back(wid);
            }
        }
    }

    /// Tells a worker to exit; its exit is then expected, not a death.
    pub(super) fn retire(&mut self, wid: WorkerId, fx: &mut impl Effects) {
        self.ready.retain(|&w| w != wid);
        if let Some(w) = self.workers.get_mut(&wid) {
            w.role = Role::Retiring;
            fx.send(&w.link, ToWorker::Shutdown);
        }
    }

    /// Schedules a refill [`REFILL_DELAY`] from now (see there), unless one is due.
    pub(super) fn refill_soon(&mut self, now: Instant) {
        self.refill_after.get_or_insert(now + REFILL_DELAY);
    }

    /// Starts workers until spares plus starting ones reach the pool size, a few at
    /// a time; each arrival calls this again.
    pub(super) fn refill(&mut self, fx: &mut impl Effects) {
        if self.shutting_down || self.spawn_failures_in_a_row >= MAX_SPAWN_FAILURES_IN_A_ROW {
            return;
        }
        // Sized for what waits, standbys included: a set load queues its creates
        // here, so the pool grows for the whole set at once, not a spare at a time.
        // Workers being freed count as spares on their way: a replace frees the old
        // set's workers as its creates start waiting, and they serve them.
        let want = self.config.pool + self.demand();
        let freeing = self
            .workers
            .values()
            .filter(|w| w.role == Role::Freeing)
            .count();
        while self.ready.len() + self.starting.len() + freeing < want
            && self.starting.len() < MAX_CONCURRENT_SPAWNS
        {
            let id = self.next_worker;
            self.next_worker += 1;
            self.starting.insert(id);
            fx.spawn(id);
        }
    }
}
