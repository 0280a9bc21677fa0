//! How much of `modsynthd` and the JACK server a set takes, before anything starts.
//!
//! Every module is one worker process and one JACK client, and its hot standby
//! (the default) one more of each. `modsynthd` refuses modules beyond its limits
//! (`--max-modules`, and [`DEFAULT_MODULE_CLIENTS`] JACK clients for modules and
//! standbys), and jackd2 has one client table for the whole server
//! ([`JACKD2_CLIENTS`]), shared with every other JACK program. A set load is fast
//! when the pool already holds a worker for each of those clients: workers beyond
//! the pool cost a JACK client open each, one at a time on jackd2.
//!
//! ```
//! use modsynth_protocol::{capacity::Capacity, setfile};
//!
//! let set = setfile::parse("s.toml", "[[module]]\nid = \"a\"\ntype = \"vco\"\n\n\
//!     [[module]]\nid = \"b\"\ntype = \"lfo\"\nstandby = \"none\"\n").unwrap();
//! let needs = Capacity::of(&set);
//! assert_eq!((needs.modules, needs.standbys, needs.jack_clients()), (2, 1, 3));
//! assert!(needs.problems(64, 0).is_empty());
//! ```

use crate::osc::Standby;
use crate::setfile::SetFile;

/// `modsynthd`'s default `--max-modules`.
pub const DEFAULT_MAX_MODULES: usize = 64;

/// JACK clients `modsynthd` lets its modules and their standbys use (the pool's
/// spares come on top). jackd2's client table holds [`JACKD2_CLIENTS`] for the
/// whole server (a run filled it at about 125 modules with standbys); 192 leaves
/// room for every other application.
pub const DEFAULT_MODULE_CLIENTS: usize = 192;

/// Clients jackd2's table holds for the whole server (jackd2 1.9.21 as Debian
/// builds it accepts 253 external ones).
pub const JACKD2_CLIENTS: usize = 256;

/// What a set needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Modules: one worker and JACK client each.
    pub modules: usize,
    /// Hot standbys among them: one more worker and JACK client each.
    pub standbys: usize,
}

impl Capacity {
    /// What `set` needs.
    pub fn of(set: &SetFile) -> Capacity {
        Capacity {
            modules: set.modules.len(),
            standbys: set
                .modules
                .iter()
                .filter(|m| m.standby == Standby::Hot)
                .count(),
        }
    }

    /// Workers, and so JACK clients, the set's modules take.
    pub fn jack_clients(&self) -> usize {
        self.modules + self.standbys
    }

    /// The `--pool` with which loading the set from a fresh `modsynthd` is
    /// assignments only: a worker for every module and standby, plus the spares
    /// `pool` keeps ready.
    pub fn pool_for_instant_load(&self, pool: usize) -> usize {
        self.jack_clients() + pool
    }

    /// Why the set would not fit a default `modsynthd` with `max_modules` (its
    /// `--max-modules`) and a pool of `pool` on an otherwise empty jackd2: one
    /// sentence each, saying what to do; empty if it fits.
    pub fn problems(&self, max_modules: usize, pool: usize) -> Vec<String> {
        let mut problems = Vec::new();
        if self.modules > max_modules {
            problems.push(format!(
                "{} modules, modsynthd takes at most {max_modules}: start it with --max-modules {}",
                self.modules, self.modules
            ));
        }
        if self.jack_clients() > DEFAULT_MODULE_CLIENTS {
            problems.push(format!(
                "{} JACK clients for modules and standbys, modsynthd allows {DEFAULT_MODULE_CLIENTS}: give some modules standby = \"none\"",
                self.jack_clients()
            ));
        }
        let server = self.jack_clients() + pool + 1;
        if server > JACKD2_CLIENTS {
            problems.push(format!(
                "{server} JACK clients with the pool and modsynthd itself, jackd2 holds {JACKD2_CLIENTS} for the whole server: give some modules standby = \"none\""
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setfile;

    fn vcos(n: usize, standby: &str) -> SetFile {
        let text: String = (0..n)
            .map(|i| {
                format!("[[module]]\nid = \"v{i}\"\ntype = \"vco\"\nstandby = \"{standby}\"\n\n")
            })
            .collect();
        setfile::parse("s.toml", &text).unwrap()
    }

    #[test]
    fn a_set_needs_a_client_per_module_and_per_hot_standby() {
        let needs = Capacity::of(&vcos(32, "hot"));
        assert_eq!(needs.jack_clients(), 64);
        assert_eq!(needs.pool_for_instant_load(8), 72);
        assert!(needs.problems(DEFAULT_MAX_MODULES, 8).is_empty());
    }

    #[test]
    fn a_set_beyond_the_limits_says_which_and_what_to_do() {
        let needs = Capacity::of(&vcos(100, "hot"));
        let problems = needs.problems(DEFAULT_MAX_MODULES, 8);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("--max-modules 100"));
        assert!(problems[1].contains("standby = \"none\""));
        let without = Capacity::of(&vcos(100, "none"));
        assert_eq!(without.problems(128, 8), Vec::<String>::new());
    }
}
