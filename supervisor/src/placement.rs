//! Where a module's hot standby sits: placement as data.
//!
//! A hot standby is a whole JACK client, and every JACK client costs a context
//! switch per period (0.21-0.44 % of a core each on the 2-core test VM at 256
//! frames), so a module plus a standby worker of its own can never reach the goal
//! of 0.5 % of a core (issue 14). A *standby host* is one worker process with one
//! JACK client that stands by for up to N modules at once, each in a *seat*
//! (`modsynthd --standby-seats N`). [`Placement::standby`] says where a module's
//! next standby goes, best first: a seat when seats are on, else (or when none is
//! free) a pool spare, as before. Two kinds of module never sit in a seat: LV2
//! plugins, whose standby plays in lockstep with its primary (a seat only stands
//! by from shared memory), and a module whose primary is a seat itself (it failed
//! over into one): its standby is a worker of its own, which then takes the
//! module back ([`Placement::hands_back`]), so a seat is only ever a standby for
//! long.
//!
//! ```
//! use modsynth_supervisor::placement::{Place, Placement};
//!
//! let off = Placement::default();
//! assert_eq!(off.standby(false, Place::Spare), [Place::Spare]);
//! let seats = Placement { seats_per_host: 8 };
//! assert_eq!(seats.standby(false, Place::Spare), [Place::Seat, Place::Spare]);
//! assert_eq!(seats.standby(true, Place::Spare), [Place::Spare], "an LV2 plugin");
//! assert_eq!(seats.standby(false, Place::Seat), [Place::Spare], "failed over into a seat");
//! assert!(seats.hands_back(Place::Seat) && !seats.hands_back(Place::Spare));
//! ```

/// Where a worker of a module sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A worker of its own: a pool spare that was given the module.
    Spare,
    /// A seat of a standby host.
    Seat,
}

/// Where standbys go (`modsynthd --standby-seats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement {
    /// Seats per standby host; 0 (the default): no hosts, every standby is a
    /// worker of its own, as before seats existed.
    pub seats_per_host: u16,
}

impl Placement {
    /// Where the next standby of a module goes, best first: `lockstep` for a
    /// module whose standby must play in lockstep (an LV2 plugin), `primary` for
    /// where its primary sits now. When no place in the list is free, the standby
    /// waits for the first one that is.
    pub fn standby(self, lockstep: bool, primary: Place) -> &'static [Place] {
        if self.seats_per_host == 0 || lockstep || primary == Place::Seat {
            &[Place::Spare]
        } else {
            &[Place::Seat, Place::Spare]
        }
    }

    /// Whether a module whose primary sits at `primary` is to be handed back to
    /// its standby once that one is ready (a seat plays a module only until a
    /// worker of its own can take it over without a gap).
    pub fn hands_back(self, primary: Place) -> bool {
        primary == Place::Seat
    }

    /// Whether a standby of a module created now (`lockstep` as in
    /// [`Placement::standby`]; its primary is a worker of its own) is expected to
    /// sit in a seat: for sizing the pool and the hosts ahead of a set load.
    pub fn seats_standby(self, lockstep: bool) -> bool {
        self.standby(lockstep, Place::Spare)[0] == Place::Seat
    }
}
