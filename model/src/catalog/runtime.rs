//! Module types found at run time: LV2 plugins (`lv2:<short name or URI>`).
//!
//! The built-in types are constants; a plugin's type is built when it is first
//! asked for, by a resolver the process installs at start (the `modsynth-lv2`
//! crate's, which asks lilv). Its [`ModuleSpec`] is then leaked once and kept, so
//! it is `&'static` like a built-in one and every part of modsynth (validation,
//! set files, patching, the worker's ports) treats it the same way. The memory is
//! bounded by the number of plugins installed: each is built at most once per
//! process (under both the name it was asked by and its canonical `lv2:<URI>`).
//!
//! ```
//! use modsynth_model::catalog::{self, runtime, Kind, ModuleSpec};
//!
//! fn resolve(name: &str) -> Result<ModuleSpec, String> {
//!     match name {
//!         "lv2:gain" | "lv2:urn:example:gain" => Ok(ModuleSpec {
//!             name: "lv2:urn:example:gain",
//!             kind: Kind::Lv2,
//!             doc: "a gain",
//!             ports: &[],
//!             params: &[],
//!         }),
//!         _ => Err(format!("no LV2 plugin '{name}' is installed")),
//!     }
//! }
//! runtime::set_resolver(resolve);
//! let spec = catalog::lookup("lv2:gain").unwrap();
//! assert_eq!(spec.name, "lv2:urn:example:gain");
//! assert!(std::ptr::eq(spec, catalog::module("lv2:urn:example:gain").unwrap()));
//! assert!(catalog::lookup("lv2:nothing").unwrap_err().contains("no LV2 plugin"));
//! ```

use super::ModuleSpec;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Builds the spec of a run-time type from its name (with the `lv2:` prefix), or
/// says why there is none (not installed, needs a feature modsynth does not offer).
pub type Resolver = fn(&str) -> Result<ModuleSpec, String>;

/// The prefix of every run-time type name.
pub const LV2_PREFIX: &str = "lv2:";

static RESOLVER: OnceLock<Resolver> = OnceLock::new();

/// Every run-time type resolved so far, by every name it was asked by.
fn known() -> &'static Mutex<HashMap<String, &'static ModuleSpec>> {
    static KNOWN: OnceLock<Mutex<HashMap<String, &'static ModuleSpec>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// Installs the resolver of run-time types; the first one installed stays.
pub fn set_resolver(resolver: Resolver) {
    let _ = RESOLVER.set(resolver);
}

/// The run-time type called `name`, resolving it on first use.
pub(super) fn lookup(name: &str) -> Result<&'static ModuleSpec, String> {
    if !name.starts_with(LV2_PREFIX) {
        return Err(format!("'{name}' is not an LV2 type (lv2:<URI>)"));
    }
    // A poisoned lock only means another thread panicked while holding it, and
    // panics abort these processes: the map is whole.
    let mut known = known().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(spec) = known.get(name) {
        return Ok(spec);
    }
    let resolve = RESOLVER
        .get()
        .ok_or_else(|| format!("'{name}': this program does not host LV2 plugins"))?;
    let spec = resolve(name)?;
    let spec: &'static ModuleSpec = match known.get(spec.name) {
        Some(same) => same,
        None => Box::leak(Box::new(spec)),
    };
    known.insert(spec.name.to_string(), spec);
    // Kept under the name asked by only when that is the URI's own tail (a short
    // name as written): any other spelling (another case) is resolved again each
    // time, so that a flood of spellings cannot grow this map.
    let tail = &name[LV2_PREFIX.len()..];
    if spec.name.ends_with(tail) {
        known.insert(name.to_string(), spec);
    }
    Ok(spec)
}
