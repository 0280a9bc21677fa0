//! Connections: module port names resolved to JACK ports, connections wanted
//! until both ends exist, every graph change mirrored onto standbys and recorded so
//! a replacement gets its primary's connections back.
//!
//! [`Patch`] owns the patch as the supervisor keeps it (the connections wanted, by
//! module port names, and the disconnections waiting to be followed) and the
//! connection changes asked of JACK. How the patch's names (`vco1:out`) map to
//! real JACK ports is the module table's to say (`impl Modules` below); the core's
//! methods tie both to the JACK graph.

use super::*;
use modsynth_model::names;
use std::collections::BTreeSet;

/// The patch, and the connection changes under way.
#[derive(Default)]
pub struct Patch {
    /// Connections to keep: made now if both ports exist, else as soon as they do,
    /// and again whenever a port comes back (a program restarted). Module ports are
    /// kept as `module:port`.
    wanted: BTreeSet<Connection>,
    /// Disconnections waiting to be followed, each with when it is due.
    disconnections: Vec<(Instant, Disconnection)>,
    /// Connection changes asked of JACK, not answered yet (see `jack_jobs`).
    pub(super) jobs: JackJobs,
}

/// A disconnection of a module's port, followed [`FORGET_LINK_DELAY`] after it
/// was seen (see `Core::graph_changed`).
pub struct Disconnection {
    /// The modules the connection touched, with the worker playing each then.
    pub players: Vec<(String, WorkerId)>,
    /// Entries of the modules' connection records to forget.
    pub links: Vec<(String, (usize, String))>,
    /// The same disconnection on standbys' ports.
    pub mirrors: Vec<(String, String)>,
    /// The connection as the patch names it, with the two real ports: forgotten
    /// from the patch only if both ports still exist when it is due (a program
    /// that quit took its connections along, and gets them back when it returns).
    pub patch_link: Option<(Connection, String, String)>,
}

impl Patch {
    /// The connections wanted.
    pub fn wanted(&self) -> &BTreeSet<Connection> {
        &self.wanted
    }

    /// Connection `c` is part of the patch from now on.
    pub fn want(&mut self, c: Connection) {
        self.wanted.insert(c);
    }

    /// Connection `c` was made (`connected`) or undone, by a request or in a
    /// patchbay: the patch follows.
    pub fn record(&mut self, c: Connection, connected: bool) {
        if connected {
            self.wanted.insert(c);
        } else {
            self.wanted.remove(&c);
        }
    }

    /// The connections wanted are `wanted`, and no others (what the supervisor
    /// whose workers are adopted kept).
    pub fn want_only(&mut self, wanted: impl IntoIterator<Item = Connection>) {
        self.wanted = wanted.into_iter().collect();
    }

    /// No connection with an end that `own` says yes to is wanted any more (a
    /// module freed: its ports, by module name and by its workers' real names).
    pub fn forget_ends(&mut self, own: impl Fn(&str) -> bool) {
        self.wanted.retain(|c| !own(&c.from) && !own(&c.to));
    }

    /// Module `old` is called `new` from now on: the connections wanted and the
    /// disconnections due name it so.
    pub fn rename_module(&mut self, old: &str, new: &str) {
        self.wanted = self
            .wanted
            .iter()
            .map(|c| Connection {
                from: renamed_end(&c.from, old, new),
                to: renamed_end(&c.to, old, new),
            })
            .collect();
        for (_, d) in &mut self.disconnections {
            for (module, _) in &mut d.players {
                if module == old {
                    *module = new.to_string();
                }
            }
            for (module, (_, other)) in &mut d.links {
                if module == old {
                    *module = new.to_string();
                }
                *other = renamed_end(other, old, new);
            }
        }
    }

    /// The connections recorded as `links` changed again: a disconnection of any
    /// of them still due is dropped, the newer change decides.
    pub fn supersede(&mut self, links: &[(String, (usize, String))]) {
        self.disconnections
            .retain(|(_, d)| !d.links.iter().any(|l| links.contains(l)));
    }

    /// Follows `d` [`FORGET_LINK_DELAY`] after `now`.
    pub fn follow_later(&mut self, now: Instant, d: Disconnection) {
        self.disconnections.push((now + FORGET_LINK_DELAY, d));
    }

    /// The disconnections due by `now`, in the order they were seen, taken out.
    pub fn due(&mut self, now: Instant) -> Vec<Disconnection> {
        let (due, later) = self
            .disconnections
            .drain(..)
            .partition(|(due, _)| *due <= now);
        self.disconnections = later;
        due.into_iter().map(|(_, d)| d).collect()
    }
}

/// Port name `name` once module `old` is called `new`: `new:port` for `old:port`,
/// any other name as it is.
pub(super) fn renamed_end(name: &str, old: &str, new: &str) -> String {
    match name.split_once(':') {
        Some((module, port)) if module == old => format!("{new}:{port}"),
        _ => name.to_string(),
    }
}

/// What a JACK port is to the supervisor (see [`Core::owner_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PortOwner {
    /// Port `index` (catalog order) of module `id`'s primary.
    Primary { id: String, index: usize },
    /// Port `index` of module `id`'s hot standby.
    Standby { id: String, index: usize },
    /// A port of one of this supervisor's pool spares.
    Spare,
    /// Any other modsynth worker's port (being freed or assigned, retiring, or of
    /// another instance).
    Worker,
    /// Anything else: `system:playback_1`, another program.
    Foreign,
}

/// Whether `port` is a worker's generic input (`...:in_3`).
fn generic_input(port: &str) -> bool {
    names::is_worker_port(port) && port.contains(":in_")
}

/// Whether `port` is a worker's generic output (`...:out_1`).
fn generic_output(port: &str) -> bool {
    names::is_worker_port(port) && port.contains(":out_")
}

/// Names in the patch, resolved against the module table: a module's ports are
/// named `module:port` in the patch and played on its workers' real JACK ports.
impl Modules {
    /// `vco1:out` -> the worker's real port name; any other name passes through.
    pub fn resolve_port(&self, name: &str) -> Result<String, String> {
        let (client, port) = name
            .split_once(':')
            .ok_or_else(|| format!("'{name}' is not a port name"))?;
        match self.get(client) {
            Some(m) => {
                let (i, _) = m.spec.port_of(client, port)?;
                m.ports.get(i).cloned().ok_or_else(|| {
                    if m.quarantined {
                        format!("{client} is quarantined (it kept crashing): free it or create it again")
                    } else if m.recovering_since.is_some() {
                        format!("{client} is being taken over by a new worker: try again in a moment")
                    } else {
                        format!("{client} is still being created")
                    }
                })
            }
            None => Ok(name.to_string()),
        }
    }

    /// `id:port` for port `index` of module `id`.
    pub fn module_port(&self, id: &str, index: usize) -> Option<String> {
        let m = self.get(id)?;
        Some(format!("{id}:{}", m.spec.ports.get(index)?.name))
    }

    /// `vcf1:in` for a module primary's real port name; any other name as it is.
    pub fn module_port_name(&self, real: &str) -> String {
        for (id, m) in self.iter() {
            if let Some(i) = m.ports.iter().position(|p| p == real) {
                if let Some(spec) = m.spec.ports.get(i) {
                    return format!("{id}:{}", spec.name);
                }
            }
        }
        real.to_string()
    }

    /// Every real port a name stands for: the primary's and, once it has one, the
    /// standby's (any other JACK name stands for itself).
    pub fn all_real_ports(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self.resolve_port(name).into_iter().collect();
        if let Some((client, port)) = name.split_once(':') {
            if let Some(m) = self.get(client) {
                if let Ok((i, _)) = m.spec.port_of(client, port) {
                    out.extend(m.standby_ports.get(i).cloned());
                }
            }
        }
        out
    }

    /// The connections that mirror `src -> dst` onto standbys: every pairing of the
    /// two ends' real ports except primary -> primary. A standby must hear what its
    /// primary hears, and its output must already reach where the primary's does.
    pub fn standby_pairs(&self, src: &str, dst: &str) -> Vec<(String, String)> {
        let (srcs, dsts) = (self.all_real_ports(src), self.all_real_ports(dst));
        let mut pairs = Vec::new();
        for (i, s) in srcs.iter().enumerate() {
            for (j, d) in dsts.iter().enumerate() {
                if i > 0 || j > 0 {
                    pairs.push((s.clone(), d.clone()));
                }
            }
        }
        pairs
    }
}

impl Core {
    pub(super) fn patch(
        &mut self,
        from: ReplyTo,
        connect: bool,
        src: &str,
        dst: &str,
        fx: &mut impl Effects,
    ) {
        let address = if connect {
            "/patch/connect"
        } else {
            "/patch/disconnect"
        };
        // The patch is kept (and saved) by module names: a worker's real port name
        // becomes the module port it plays, or is refused.
        let (src, dst) = match self
            .patch_name(src)
            .and_then(|s| self.patch_name(dst).map(|d| (s, d)))
        {
            Ok(names) => names,
            Err(e) => return fx.reply(from, Fail::new(address, e).to_message()),
        };
        let (src, dst) = (src.as_str(), dst.as_str());
        let resolved = self
            .modules
            .resolve_port(src)
            .and_then(|s| self.modules.resolve_port(dst).map(|d| (s, d)));
        let checked = resolved.and_then(|(s, d)| {
            for (given, real) in [(src, &s), (dst, &d)] {
                if !fx.port_exists(real) {
                    return Err(format!(
                        "no port '{given}' (modules: `modsynth ls`, JACK ports: `jack_lsp`)"
                    ));
                }
            }
            Ok((s, d))
        });
        match checked {
            // The reply waits for JACK's answer (`patch_answered`); the core does not.
            Ok((s, d)) => {
                let then = Then::Reply {
                    from,
                    src: src.to_string(),
                    dst: dst.to_string(),
                };
                self.jack_patch(connect, &s, &d, then, fx);
            }
            Err(e) => fx.reply(from, Fail::new(address, e).to_message()),
        }
    }

    /// Asks JACK for a connection change; `then` says what its result does.
    pub(super) fn jack_patch(
        &mut self,
        connect: bool,
        src: &str,
        dst: &str,
        then: Then,
        fx: &mut impl Effects,
    ) {
        let job = self.patch.jobs.job(connect, src, dst, fx.now());
        match fx.patch(&job) {
            Some(result) => self.patch_answered(job, then, result, fx),
            None => self.patch.jobs.wait_for(job, then),
        }
    }

    /// Best effort: asks for a connection change unless the same one is under way,
    /// and logs a failure as `context: reason`.
    pub(super) fn jack_patch_logged(
        &mut self,
        connect: bool,
        src: &str,
        dst: &str,
        context: impl Into<String>,
        fx: &mut impl Effects,
    ) {
        if self.patch.jobs.is_pending(connect, src, dst) {
            return;
        }
        let then = Then::Log {
            context: context.into(),
            done: None,
        };
        self.jack_patch(connect, src, dst, then, fx);
    }

    /// [`Event::Patched`]: a connection change's result arrived.
    pub(super) fn patched(
        &mut self,
        token: u64,
        result: Result<(), String>,
        fx: &mut impl Effects,
    ) {
        let answered = self.patch.jobs.answered(token);
        self.release_answers(fx);
        match answered {
            Some(p) => self.patch_answered(p.job, p.then, result, fx),
            // Failed at its deadline already. A request that JACK made after all
            // is undone (its /fail said nothing changed), unless a newer change of
            // the same ports is under way: that one, made after it, decides.
            None => match (self.patch.jobs.made_late(token), result) {
                (Some(job), Ok(())) if !self.patch.jobs.touches(&job.src, &job.dst) => {
                    let then = Then::Log {
                        context: format!("undoing late {}", job.what()),
                        done: Some(format!(
                            "undid {}: the JACK server made it after its request had failed",
                            job.what()
                        )),
                    };
                    self.jack_patch(!job.connect, &job.src, &job.dst, then, fx);
                }
                (_, Ok(())) => {
                    tracing::warn!("connection change {token} was made after its deadline")
                }
                (_, Err(e)) => tracing::debug!("connection change {token}, failed late: {e}"),
            },
        }
    }

    /// Answers `to` with `msg` once every connection change asked so far is
    /// answered (at once if none is under way).
    pub(super) fn answer_after_patches(
        &mut self,
        to: Option<ReplyTo>,
        msg: OscMessage,
        fx: &mut impl Effects,
    ) {
        if let Some((to, msg)) = self.patch.jobs.hold(to, msg) {
            self.answer(to, msg, fx);
        }
    }

    /// Sends the held answers whose connection changes are all answered.
    fn release_answers(&mut self, fx: &mut impl Effects) {
        for (to, msg) in self.patch.jobs.released() {
            self.answer(to, msg, fx);
        }
    }

    /// Fails the connection changes the JACK server has not answered in time.
    pub(super) fn expire_patches(&mut self, fx: &mut impl Effects) {
        for p in self.patch.jobs.expired(fx.now()) {
            let reason = p.job.timeout();
            if matches!(p.then, Then::Reply { .. }) {
                self.patch.jobs.failed_late(p.job.clone());
            }
            self.patch_answered(p.job, p.then, Err(reason), fx);
        }
        self.release_answers(fx);
    }

    /// Acts on a connection change's result as its `then` says.
    fn patch_answered(
        &mut self,
        job: PatchJob,
        then: Then,
        result: Result<(), String>,
        fx: &mut impl Effects,
    ) {
        match then {
            Then::Reply { from, src, dst } => {
                let address = if job.connect {
                    "/patch/connect"
                } else {
                    "/patch/disconnect"
                };
                if let Err(e) = result {
                    return fx.reply(from, Fail::new(address, e).to_message());
                }
                let c = Connection {
                    from: src.clone(),
                    to: dst.clone(),
                };
                self.patch.record(c, job.connect);
                // The same on the standbys' ports, so a standby that takes over is
                // already patched (best effort: the primary's result is the answer).
                for (s2, d2) in self.modules.standby_pairs(&src, &dst) {
                    self.jack_patch_logged(job.connect, &s2, &d2, "standby mirror", fx);
                }
                fx.reply(
                    from,
                    osc::done(address, vec![osc::text(&src), osc::text(&dst)]),
                )
            }
            Then::Log { context, done } => match result {
                Ok(()) => {
                    if let Some(done) = done {
                        tracing::info!("{done}");
                    }
                }
                Err(e) => tracing::warn!("{context}: {e}"),
            },
            Then::StandbyMoved { a, b, c } => match result {
                Ok(()) => tracing::warn!(
                    "{a} -> {b} was connected to a standby's port: a standby only mirrors \
                     its module, so {} -> {} is connected instead (the standby keeps the \
                     connection as a mirror)",
                    c.from,
                    c.to
                ),
                Err(e) => self.undo(&a, &b, &format!("a standby's port ({e})"), fx),
            },
        }
    }

    /// Makes every wanted connection whose two ports exist now. Already-connected
    /// pairs are skipped, so this is cheap to call on every graph change.
    pub(super) fn make_wanted_connections(&mut self, fx: &mut impl Effects) {
        for c in self.patch.wanted().clone() {
            let (Ok(src), Ok(dst)) = (
                self.modules.resolve_port(&c.from),
                self.modules.resolve_port(&c.to),
            ) else {
                continue;
            };
            let pairs =
                std::iter::once((src, dst)).chain(self.modules.standby_pairs(&c.from, &c.to));
            for (src, dst) in pairs {
                if fx.port_exists(&src)
                    && fx.port_exists(&dst)
                    && !fx.connections(&src).contains(&dst)
                    && !self.patch.jobs.is_pending(true, &src, &dst)
                {
                    let then = Then::Log {
                        context: format!("pending connection {} -> {}", c.from, c.to),
                        done: Some(format!("connected {src} -> {dst} ({} -> {})", c.from, c.to)),
                    };
                    self.jack_patch(true, &src, &dst, then, fx);
                }
            }
        }
    }

    /// A connection changed in the JACK graph (qjackctl, jack_connect, anyone). Where
    /// one end is a module primary's port, the module's record of its connections
    /// (`Module::links`, restored on a replacement) follows, and the same change is
    /// made on its standby's port, so hand-made patches survive a failover.
    ///
    /// A connection is followed at once. A disconnection waits
    /// [`FORGET_LINK_DELAY`]: JACK disconnects a dead client's ports, and those
    /// notices may come before the death is known; acting on them would forget the
    /// dead primary's connections and cut the standby that is taking over from them.
    /// So it is followed only if every module it touched is still played by the same
    /// worker when it is due.
    pub(super) fn graph_changed(&mut self, a: u32, b: u32, connected: bool, fx: &mut impl Effects) {
        if self.shutting_down {
            return; // workers closing disconnect everything: nothing to keep
        }
        let (Some(na), Some(nb)) = (fx.port_name(a), fx.port_name(b)) else {
            return;
        };
        if !(connected || fx.port_exists(&na) && fx.port_exists(&nb)) {
            // A port that is gone took its connections (and their mirrors) with it;
            // the record keeps them for a replacement.
            return;
        }
        // Whoever connects a controller to `midi_in` (qjackctl, a2j, modsynth), the
        // connection is kept: made again for the next modsynthd, saved in sets.
        let midi_in = self.midi_in_port();
        for (here, other) in [(&na, &nb), (&nb, &na)] {
            if *here == midi_in {
                let c = Connection {
                    from: other.clone(),
                    to: midi_in.clone(),
                };
                self.patch.record(c, connected);
                return;
            }
        }
        let (oa, ob) = (self.owner_of(&na), self.owner_of(&nb));
        if connected && (oa == PortOwner::Spare || ob == PortOwner::Spare) {
            return self.undo_spare_connection(&na, &nb, fx);
        }
        let is_standby = |o: &PortOwner| matches!(o, PortOwner::Standby { .. });
        if is_standby(&oa) || is_standby(&ob) {
            if connected {
                self.check_standby_connection(&na, &nb, fx);
            }
            return; // mirrors, not the patch
        }
        let patch_link = self
            .module_level_connection(&na, &nb)
            .map(|c| (c, na.clone(), nb.clone()));
        let mut links = Vec::new();
        let mut mirrors = Vec::new();
        let mut players = Vec::new();
        for (id, m) in self.modules.iter() {
            for (here, other) in [(&na, &nb), (&nb, &na)] {
                let Some(i) = m.ports.iter().position(|p| p == here) else {
                    continue;
                };
                players.push((id.clone(), m.worker));
                links.push((id.clone(), (i, self.modules.module_port_name(other))));
                if let (Some(standby), Some(spec)) = (m.standby_ports.get(i), m.spec.ports.get(i)) {
                    mirrors.push(match spec.direction {
                        catalog::Direction::Out => (standby.clone(), other.clone()),
                        catalog::Direction::In => (other.clone(), standby.clone()),
                    });
                }
            }
        }
        // A newer change of the same link wins over a disconnection still due.
        self.patch.supersede(&links);
        if connected {
            for (id, link) in links {
                if let Some(m) = self.modules.get_mut(&id) {
                    m.links.insert(link);
                }
            }
            self.patch_mirrors(true, &mirrors, fx);
        } else if !links.is_empty() {
            let d = Disconnection {
                players,
                links,
                mirrors,
                patch_link,
            };
            self.patch.follow_later(fx.now(), d);
        }
    }

    /// Follows the disconnections that are due (see [`Core::graph_changed`]).
    pub(super) fn follow_disconnections(&mut self, fx: &mut impl Effects) {
        for d in self.patch.due(fx.now()) {
            let same_players = d
                .players
                .iter()
                .all(|(id, w)| self.modules.get(id).is_some_and(|m| m.worker == *w));
            if !same_players {
                continue;
            }
            for (id, link) in &d.links {
                if let Some(m) = self.modules.get_mut(id) {
                    m.links.remove(link);
                }
            }
            // Undone by hand in a patchbay: no longer part of the patch, so it is
            // neither saved nor made again when a port comes back.
            if let Some((c, a, b)) = &d.patch_link {
                if fx.port_exists(a) && fx.port_exists(b) {
                    self.patch.record(c.clone(), false);
                }
            }
            self.patch_mirrors(false, &d.mirrors, fx);
        }
    }

    /// Makes (or undoes) connections on standbys' ports, where not so already.
    fn patch_mirrors(
        &mut self,
        connect: bool,
        mirrors: &[(String, String)],
        fx: &mut impl Effects,
    ) {
        for (src, dst) in mirrors {
            if fx.connections(src).contains(dst) != connect {
                self.jack_patch_logged(connect, src, dst, "mirroring onto a standby", fx);
            }
        }
    }

    /// A name given to `/patch/connect` as the patch keeps it: `module:port` and
    /// foreign JACK ports as they are, a real port of a module's primary or standby
    /// as that module's port; any other modsynth worker port is refused.
    pub(super) fn patch_name(&self, name: &str) -> Result<String, String> {
        if let Some((client, _)) = name.split_once(':') {
            if self.modules.contains_key(client) {
                return Ok(name.to_string());
            }
        }
        match self.owner_of(name) {
            PortOwner::Primary { id, index } | PortOwner::Standby { id, index } => Ok(self
                .modules
                .module_port(&id, index)
                .unwrap_or_else(|| name.to_string())),
            PortOwner::Spare | PortOwner::Worker => Err(names::worker_port_error(name)),
            PortOwner::Foreign => Ok(name.to_string()),
        }
    }

    /// What the JACK port `real` is to this supervisor.
    pub(super) fn owner_of(&self, real: &str) -> PortOwner {
        for (id, m) in self.modules.iter() {
            if let Some(index) = m.ports.iter().position(|p| p == real) {
                return PortOwner::Primary {
                    id: id.clone(),
                    index,
                };
            }
            if let Some(index) = m.standby_ports.iter().position(|p| p == real) {
                return PortOwner::Standby {
                    id: id.clone(),
                    index,
                };
            }
        }
        let client = real.split_once(':').map_or(real, |(c, _)| c);
        match self.workers.values().find(|w| w.link.client == client) {
            Some(w) if w.role == Role::Spare => PortOwner::Spare,
            Some(_) => PortOwner::Worker,
            None if names::is_worker_port(real) => PortOwner::Worker,
            None => PortOwner::Foreign,
        }
    }

    /// The connection between real ports `a` and `b` as the patch names it (source
    /// first), if one end is a module's port (primary or standby) and the other is a
    /// module port or a foreign port.
    fn module_level_connection(&self, a: &str, b: &str) -> Option<Connection> {
        let level = |real: &str| -> Option<(String, Option<catalog::Direction>)> {
            match self.owner_of(real) {
                PortOwner::Primary { id, index } | PortOwner::Standby { id, index } => {
                    let m = self.modules.get(&id)?;
                    let spec = m.spec.ports.get(index)?;
                    Some((format!("{id}:{}", spec.name), Some(spec.direction)))
                }
                PortOwner::Foreign => Some((real.to_string(), None)),
                PortOwner::Spare | PortOwner::Worker => None,
            }
        };
        let ((na, da), (nb, db)) = (level(a)?, level(b)?);
        let a_is_source = match (da, db) {
            (Some(d), _) => d == catalog::Direction::Out,
            (None, Some(d)) => d == catalog::Direction::In,
            (None, None) => return None,
        };
        Some(if a_is_source {
            Connection { from: na, to: nb }
        } else {
            Connection { from: nb, to: na }
        })
    }

    /// A connection to a standby's port appeared. The supervisor makes those only as
    /// mirrors of the patch; one that mirrors nothing was made by hand (in a
    /// patchbay, the standby's box looks like any other): it is moved to the module
    /// the standby stands for, so that it is part of the patch and the standby keeps
    /// it as a mirror, or undone if the module cannot take it now.
    fn check_standby_connection(&mut self, a: &str, b: &str, fx: &mut impl Effects) {
        let Some(c) = self.module_level_connection(a, b) else {
            return self.undo(
                a,
                b,
                "it joins a standby to a worker that plays no module",
                fx,
            );
        };
        if self.is_in_patch(&c, fx) {
            return; // a mirror
        }
        let resolved = self
            .modules
            .resolve_port(&c.from)
            .and_then(|s| self.modules.resolve_port(&c.to).map(|d| (s, d)));
        match resolved {
            Ok((s, d)) => {
                let then = Then::StandbyMoved {
                    a: a.to_string(),
                    b: b.to_string(),
                    c,
                };
                self.jack_patch(true, &s, &d, then, fx);
            }
            Err(e) => self.undo(a, b, &format!("a standby's port ({e})"), fx),
        }
    }

    /// Whether the module-level connection `c` is part of the patch: wanted, in a
    /// module's record of its connections, or made between the primaries now.
    fn is_in_patch(&self, c: &Connection, fx: &mut impl Effects) -> bool {
        if self.patch.wanted().contains(c) {
            return true;
        }
        let recorded = |port: &str, other: &str| {
            port.split_once(':').is_some_and(|(id, name)| {
                self.modules.get(id).is_some_and(|m| {
                    m.spec
                        .ports
                        .iter()
                        .position(|p| p.name == name)
                        .is_some_and(|i| m.links.contains(&(i, other.to_string())))
                })
            })
        };
        if recorded(&c.from, &c.to) || recorded(&c.to, &c.from) {
            return true;
        }
        match (
            self.modules.resolve_port(&c.from),
            self.modules.resolve_port(&c.to),
        ) {
            (Ok(s), Ok(d)) => fx.connections(&s).contains(&d),
            _ => false,
        }
    }

    /// A connection to a spare's port appeared: spares play nothing, and the next
    /// module they take would inherit it. Undone, and said so.
    fn undo_spare_connection(&mut self, a: &str, b: &str, fx: &mut impl Effects) {
        self.undo(a, b, "a pool spare's port (spares play nothing)", fx);
    }

    /// Disconnects `a` and `b` (in whichever direction they are connected) if they
    /// still are, and logs why.
    fn undo(&mut self, a: &str, b: &str, why: &str, fx: &mut impl Effects) {
        if !fx.connections(a).iter().any(|p| p == b) {
            return;
        }
        // JACK wants the source first; a worker's generic port names its direction.
        let (src, dst) = if generic_input(a) || generic_output(b) {
            (b, a)
        } else {
            (a, b)
        };
        let then = Then::Log {
            context: format!("cannot undo the connection {src} -> {dst} ({why})"),
            done: Some(format!("undid the connection {src} -> {dst}: {why}")),
        };
        self.jack_patch(false, src, dst, then, fx);
    }

    /// Connects a replacement's ports as the dead primary's were.
    pub(super) fn restore_links(
        &mut self,
        id: &str,
        links: &[(usize, String)],
        fx: &mut impl Effects,
    ) {
        let Some(m) = self.modules.get(id) else {
            return;
        };
        let mut patches = Vec::new();
        for (i, other) in links {
            let (Some(own), Some(spec)) = (m.ports.get(*i), m.spec.ports.get(*i)) else {
                continue;
            };
            let Ok(other) = self.modules.resolve_port(other) else {
                continue;
            };
            patches.push(match spec.direction {
                catalog::Direction::Out => (own.clone(), other),
                catalog::Direction::In => (other, own.clone()),
            });
        }
        for (src, dst) in patches {
            let context = format!("restoring a connection of {id}");
            self.jack_patch_logged(true, &src, &dst, context, fx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(from: &str, to: &str) -> Connection {
        Connection {
            from: from.into(),
            to: to.into(),
        }
    }

    /// A disconnection of `module`'s port 0 from `other`, played by worker 1.
    fn cut(module: &str, other: &str) -> Disconnection {
        Disconnection {
            players: vec![(module.into(), 1)],
            links: vec![(module.into(), (0, other.into()))],
            mirrors: Vec::new(),
            patch_link: None,
        }
    }

    #[test]
    fn a_connection_is_wanted_once_made_until_undone() {
        let mut patch = Patch::default();
        patch.record(c("osc:out", "system:playback_1"), true);
        patch.want(c("osc:out", "vcf:in"));
        patch.record(c("osc:out", "system:playback_1"), false);
        assert_eq!(
            patch.wanted().iter().collect::<Vec<_>>(),
            [&c("osc:out", "vcf:in")]
        );
        patch.want_only([c("a:out", "b:in")]);
        assert_eq!(patch.wanted().len(), 1, "an adopted patch replaces it");
    }

    #[test]
    fn a_freed_module_takes_its_connections_along_by_either_end() {
        let mut patch = Patch::default();
        patch.want(c("osc:out", "vcf:in"));
        patch.want(c("lfo:out", "osc:fm"));
        patch.want(c("modsynth-w03:out_1", "system:playback_1"));
        patch.want(c("vcf:out", "system:playback_1"));
        let own = |name: &str| name.starts_with("osc:") || name == "modsynth-w03:out_1";
        patch.forget_ends(own);
        assert_eq!(
            patch.wanted().iter().collect::<Vec<_>>(),
            [&c("vcf:out", "system:playback_1")]
        );
    }

    #[test]
    fn a_renamed_module_is_renamed_in_the_patch_and_the_disconnections_due() {
        let mut patch = Patch::default();
        patch.want(c("b.osc:out", "b.osc2:in"));
        patch.follow_later(Instant::now(), cut("b.osc", "b.osc2:in"));
        patch.follow_later(Instant::now(), cut("vcf", "b.osc:out"));
        patch.rename_module("b.osc", "osc");
        assert!(patch.wanted().contains(&c("osc:out", "b.osc2:in")));
        assert_eq!(patch.wanted().len(), 1);
        let due = patch.due(Instant::now() + FORGET_LINK_DELAY);
        assert_eq!(due[0].players, [("osc".to_string(), 1)]);
        assert_eq!(due[0].links, [("osc".to_string(), (0, "b.osc2:in".into()))]);
        assert_eq!(due[1].links, [("vcf".to_string(), (0, "osc:out".into()))]);
    }

    #[test]
    fn a_disconnection_is_followed_once_due_unless_the_link_changed_again() {
        let mut patch = Patch::default();
        let t0 = Instant::now();
        patch.follow_later(t0, cut("osc", "vcf:in"));
        patch.follow_later(t0, cut("lfo", "osc:fm"));
        patch.follow_later(t0 + FORGET_LINK_DELAY, cut("amp", "system:playback_1"));
        // Connected again before it was due: the connection stays recorded.
        patch.supersede(&[("osc".into(), (0, "vcf:in".into()))]);
        assert!(patch.due(t0).is_empty());
        let due = patch.due(t0 + FORGET_LINK_DELAY);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].players[0].0, "lfo");
        assert!(patch.due(t0 + FORGET_LINK_DELAY).is_empty(), "once");
        assert_eq!(patch.due(t0 + 2 * FORGET_LINK_DELAY).len(), 1);
    }

    /// A vco (ports `pitch`, `fm`, `out`) played on worker 1's ports, with a
    /// standby on worker 2's once `standby` says so.
    fn vco(standby: bool) -> Module {
        let spec = catalog::module("vco").unwrap();
        let mut m = Module::new(spec, 1, spec.defaults(), Standby::Hot, String::new());
        let ports = |w: u32| {
            ["in_1", "in_2", "out_1"]
                .map(|p| format!("modsynth-w{w:02}:{p}"))
                .to_vec()
        };
        m.ports = ports(1);
        if standby {
            m.standby_worker = Some(2);
            m.standby_ports = ports(2);
        }
        m
    }

    #[test]
    fn a_module_port_resolves_to_its_primary_s_real_port_any_other_name_to_itself() {
        let mut modules = Modules::default();
        modules.insert("osc".into(), vco(true));
        assert_eq!(
            modules.resolve_port("osc:out").unwrap(),
            "modsynth-w01:out_1"
        );
        assert_eq!(
            modules.resolve_port("system:playback_1").unwrap(),
            "system:playback_1"
        );
        let no_port = modules.resolve_port("osc:cv").unwrap_err();
        assert!(no_port.contains("has no port 'cv'"), "{no_port}");
        assert!(modules.resolve_port("osc").is_err(), "not a port name");
        assert_eq!(modules.module_port_name("modsynth-w01:in_2"), "osc:fm");
        assert_eq!(
            modules.module_port_name("modsynth-w02:in_2"),
            "modsynth-w02:in_2",
            "a standby's port is not the module's"
        );
        assert_eq!(modules.module_port("osc", 0).as_deref(), Some("osc:pitch"));
        assert_eq!(modules.module_port("osc", 3), None);
    }

    #[test]
    fn a_module_without_ports_says_why() {
        let mut modules = Modules::default();
        let portless = || {
            let mut m = vco(false);
            m.ports.clear();
            m
        };
        let mut recovering = portless();
        recovering.recovering_since = Some(Instant::now());
        let mut quarantined = portless();
        quarantined.quarantined = true;
        modules.insert("a".into(), portless());
        modules.insert("b".into(), recovering);
        modules.insert("c".into(), quarantined);
        let why = |port: &str| modules.resolve_port(port).unwrap_err();
        assert!(why("a:out").contains("still being created"));
        assert!(why("b:out").contains("being taken over"));
        assert!(why("c:out").contains("quarantined"));
    }

    #[test]
    fn a_connection_is_mirrored_onto_every_pairing_with_a_standby_s_port() {
        let mut modules = Modules::default();
        modules.insert("osc".into(), vco(true));
        modules.insert("lfo".into(), vco(false));
        assert_eq!(
            modules.standby_pairs("osc:out", "system:playback_1"),
            [("modsynth-w02:out_1".into(), "system:playback_1".into())]
        );
        assert!(
            modules
                .standby_pairs("lfo:out", "system:playback_1")
                .is_empty(),
            "no standby: nothing to mirror"
        );
        let mut both = vco(true);
        both.ports = vec!["a:in".into(), "a:fm".into(), "a:out".into()];
        both.standby_ports = vec!["b:in".into(), "b:fm".into(), "b:out".into()];
        modules.insert("vcf".into(), both);
        let pairs = modules.standby_pairs("osc:out", "vcf:pitch");
        let primary_to_primary = ("modsynth-w01:out_1".to_string(), "a:in".to_string());
        assert_eq!(pairs.len(), 3);
        assert!(
            !pairs.contains(&primary_to_primary),
            "that is the connection itself"
        );
    }

    #[test]
    fn only_the_renamed_module_s_own_ports_change_name() {
        assert_eq!(renamed_end("b.osc:out", "b.osc", "osc"), "osc:out");
        assert_eq!(renamed_end("b.osc2:out", "b.osc", "osc"), "b.osc2:out");
        assert_eq!(renamed_end("b.osc", "b.osc", "osc"), "b.osc", "not a port");
    }
}
