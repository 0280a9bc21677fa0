//! Connections: module port names resolved to JACK ports, connections wanted
//! until both ends exist, every graph change mirrored onto standbys and recorded so
//! a replacement gets its primary's connections back.

use super::*;

impl Core {
    /// `vco1:out` -> the worker's real port name; any other name passes through.
    pub(super) fn resolve_port(&self, name: &str) -> Result<String, String> {
        let (client, port) = name
            .split_once(':')
            .ok_or_else(|| format!("'{name}' is not a port name"))?;
        match self.modules.get(client) {
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
        let resolved = self
            .resolve_port(src)
            .and_then(|s| self.resolve_port(dst).map(|d| (s, d)));
        let result = resolved.and_then(|(s, d)| {
            for (given, real) in [(src, &s), (dst, &d)] {
                if !fx.port_exists(real) {
                    return Err(format!(
                        "no port '{given}' (modules: `modsynth ls`, JACK ports: `jack_lsp`)"
                    ));
                }
            }
            fx.patch(connect, &s, &d)?;
            // The same on the standbys' ports, so a standby that takes over is
            // already patched (best effort: the primary's result is the answer).
            for (s2, d2) in self.standby_pairs(src, dst) {
                if let Err(e) = fx.patch(connect, &s2, &d2) {
                    tracing::warn!("standby mirror: {e}");
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                let c = Connection {
                    from: src.to_string(),
                    to: dst.to_string(),
                };
                if connect {
                    self.wanted.insert(c);
                } else {
                    self.wanted.remove(&c);
                }
                fx.reply(
                    from,
                    osc::done(address, vec![osc::text(src), osc::text(dst)]),
                )
            }
            Err(e) => fx.reply(from, Fail::new(address, e).to_message()),
        }
    }

    /// Makes every wanted connection whose two ports exist now. Already-connected
    /// pairs are skipped, so this is cheap to call on every graph change.
    pub(super) fn make_wanted_connections(&mut self, fx: &mut impl Effects) {
        for c in self.wanted.clone() {
            let (Ok(src), Ok(dst)) = (self.resolve_port(&c.from), self.resolve_port(&c.to)) else {
                continue;
            };
            let pairs = std::iter::once((src, dst)).chain(self.standby_pairs(&c.from, &c.to));
            for (src, dst) in pairs {
                if fx.port_exists(&src)
                    && fx.port_exists(&dst)
                    && !fx.connections(&src).contains(&dst)
                {
                    match fx.patch(true, &src, &dst) {
                        Ok(()) => {
                            tracing::info!("connected {src} -> {dst} ({} -> {})", c.from, c.to)
                        }
                        Err(e) => tracing::warn!("pending connection {} -> {}: {e}", c.from, c.to),
                    }
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
        let is_standby_port = |name: &str| {
            self.modules
                .values()
                .any(|m| m.standby_ports.iter().any(|p| p == name))
        };
        if is_standby_port(&na) || is_standby_port(&nb) {
            return; // mirrors, not the patch
        }
        let mut links = Vec::new();
        let mut mirrors = Vec::new();
        let mut players = Vec::new();
        for (id, m) in &self.modules {
            for (here, other) in [(&na, &nb), (&nb, &na)] {
                let Some(i) = m.ports.iter().position(|p| p == here) else {
                    continue;
                };
                players.push((id.clone(), m.worker));
                links.push((id.clone(), (i, self.module_port_name(other))));
                if let (Some(standby), Some(spec)) = (m.standby_ports.get(i), m.spec.ports.get(i)) {
                    mirrors.push(match spec.direction {
                        catalog::Direction::Out => (standby.clone(), other.clone()),
                        catalog::Direction::In => (other.clone(), standby.clone()),
                    });
                }
            }
        }
        // A newer change of the same link wins over a disconnection still due.
        self.disconnections
            .retain(|d| !d.links.iter().any(|l| links.contains(l)));
        if connected {
            for (id, link) in links {
                if let Some(m) = self.modules.get_mut(&id) {
                    m.links.insert(link);
                }
            }
            self.patch_mirrors(true, &mirrors, fx);
        } else if !links.is_empty() {
            self.disconnections.push(Disconnection {
                due: fx.now() + FORGET_LINK_DELAY,
                players,
                links,
                mirrors,
            });
        }
    }

    /// Follows the disconnections that are due (see [`Core::graph_changed`]).
    pub(super) fn follow_disconnections(&mut self, fx: &mut impl Effects) {
        let now = fx.now();
        let (due, later): (Vec<Disconnection>, Vec<Disconnection>) =
            self.disconnections.drain(..).partition(|d| d.due <= now);
        self.disconnections = later;
        for d in due {
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
                if let Err(e) = fx.patch(connect, src, dst) {
                    tracing::warn!("mirroring onto a standby: {e}");
                }
            }
        }
    }

    /// `vcf1:in` for a module primary's real port name; any other name as it is.
    pub(super) fn module_port_name(&self, real: &str) -> String {
        for (id, m) in &self.modules {
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
    pub(super) fn all_real_ports(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self.resolve_port(name).into_iter().collect();
        if let Some((client, port)) = name.split_once(':') {
            if let Some(m) = self.modules.get(client) {
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
    pub(super) fn standby_pairs(&self, src: &str, dst: &str) -> Vec<(String, String)> {
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
            let Ok(other) = self.resolve_port(other) else {
                continue;
            };
            patches.push(match spec.direction {
                catalog::Direction::Out => (own.clone(), other),
                catalog::Direction::In => (other, own.clone()),
            });
        }
        for (src, dst) in patches {
            if let Err(e) = fx.patch(true, &src, &dst) {
                tracing::warn!("restoring a connection of {id}: {e}");
            }
        }
    }
}
