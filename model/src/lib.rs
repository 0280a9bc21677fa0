//! What modsynth is made of, as plain data: no I/O, no threads, no JACK.
//!
//! - [`catalog`]: the module types, their ports and their parameters; each module
//!   type's parameter table is built from the index constants its DSP kernel uses.
//! - [`param`]: checks parameter values against the catalog.
//! - [`ccmap`]: MIDI CC mappings (a knob drives a parameter), checked and evaluated.
//! - [`names`]: what a module id and an instance name may look like.
//! - [`protocol`]: the messages between the supervisor and its workers.
//! - [`histogram`]: medians and p99s of measurements, one way for every part.
//!
//! Every process links this crate: the worker for the catalog and the protocol, the
//! supervisor and the CLI for the catalog, validation and names.
//!
//! ```
//! use modsynth_model::{catalog, param};
//!
//! let vco = catalog::module("vco").unwrap();
//! assert_eq!(param::validate(vco, "freq", param::Value::Float(220.0)).unwrap().1, 220.0);
//! assert!(param::validate(vco, "freq", param::Value::Float(f32::NAN)).is_err());
//! ```

#![deny(missing_docs)]

pub mod catalog;
pub mod ccmap;
pub mod histogram;
pub mod names;
pub mod param;
pub mod protocol;
