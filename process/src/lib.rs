//! What every modsynth process sets up the same way.
//!
//! - [`logging`]: `tracing` to stderr, rate-limited lines, panics that abort.
//! - [`jack_server_name`] and [`process_start_time`]: which JACK server this process
//!   plays on, and a pid that cannot be mistaken for a later process with the same
//!   number; [`is_stopped`]: whether a process is stopped (SIGSTOP).
//!
//! ```
//! use modsynth_process::{jack_server_name, process_start_time};
//!
//! // Without JACK_DEFAULT_SERVER, libjack talks to the server called "default".
//! assert!(!jack_server_name().is_empty());
//! assert!(process_start_time(std::process::id()).is_some());
//! ```

#![deny(missing_docs)]

mod identity;
pub mod logging;

pub use identity::{is_stopped, jack_server_name, process_start_time};
