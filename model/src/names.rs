//! Module ids: the names users give modules.
//!
//! An id becomes part of JACK port names (`vco1:out`), of OSC addresses (`/vco1/freq`)
//! and of shared-memory segment names, so it is kept to characters all three accept.
//!
//! ```
//! use modsynth_model::names::check_module_id;
//!
//! assert!(check_module_id("vco1").is_ok());
//! assert!(check_module_id("bass-filter_2").is_ok());
//! assert!(check_module_id("my vco").is_err());
//! ```

/// The longest id accepted (JACK client names are at most 63 bytes; ids leave room).
pub const MAX_ID_LEN: usize = 32;

/// Checks that `id` starts with a letter, is at most [`MAX_ID_LEN`] bytes and holds
/// only ASCII letters, digits, `_` and `-`; the error says what is wrong.
pub fn check_module_id(id: &str) -> Result<(), String> {
    let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if id.is_empty() {
        Err("a module id cannot be empty".into())
    } else if id.len() > MAX_ID_LEN {
        Err(format!(
            "module id '{id}' is longer than {MAX_ID_LEN} characters"
        ))
    } else if !first_ok || !rest_ok {
        Err(format!(
            "module id '{id}' must start with a letter and hold only letters, digits, '_' and '-'"
        ))
    } else {
        Ok(())
    }
}

/// Checks an instance name (`modsynthd --name`, `modsynth shm --name`): the rules of
/// a module id ([`check_module_id`]) without `-`.
///
/// Why no `-`: shared-memory segments are named `/<instance>-<owner>-<kind>`, and
/// module ids may hold a `-`. With a `-` in instance names, instance `a` with module
/// `b-c` and instance `a-b` with module `c` would both name `/a-b-c-state`; without
/// one, everything before the first `-` of a segment's name is its instance, so no
/// two instances can name the same segment and a scan by prefix finds only its own.
///
/// ```
/// use modsynth_model::names::check_instance_name;
/// assert!(check_instance_name("live2").is_ok());
/// assert!(check_instance_name("live-2").unwrap_err().contains("'-'"));
/// ```
pub fn check_instance_name(name: &str) -> Result<(), String> {
    check_module_id(name).map_err(|e| e.replace("module id", "instance name"))?;
    if name.contains('-') {
        return Err(format!(
            "instance name '{name}' must not contain '-' (segment names are \
             /<instance>-<module>-<kind>, so a '-' would let two instances name the same \
             segment); try '{}'",
            name.replace('-', "_")
        ));
    }
    Ok(())
}

/// Whether `name` is the real JACK name of a pooled worker's port, of any modsynth
/// instance: `<instance>-w<NN>:in_<n>` or `...:out_<n>`.
///
/// Such a name is never part of a patch: workers are numbered as they start, so the
/// same name plays another module (or none) in the next `modsynthd`, and a saved
/// connection to it would patch whatever that is. Patches name modules
/// (`osc1:out`). A module whose id looks like a worker's client (`x-w01`) is not
/// confused with one: module ports are named by the catalog (`in`, `in1`, `out`),
/// never `in_1`; callers that know the modules check them first anyway.
///
/// ```
/// use modsynth_model::names::is_worker_port;
///
/// assert!(is_worker_port("qj-w09:in_1"));
/// assert!(is_worker_port("modsynth-w120:out_2"));
/// assert!(!is_worker_port("osc1:out"));
/// assert!(!is_worker_port("system:playback_1"));
/// assert!(!is_worker_port("mix-w01:in1"));
/// ```
pub fn is_worker_port(name: &str) -> bool {
    let Some((client, port)) = name.split_once(':') else {
        return false;
    };
    let numbered = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let worker_client = client
        .rsplit_once("-w")
        .is_some_and(|(instance, n)| !instance.is_empty() && n.len() >= 2 && numbered(n));
    let generic_port = ["in_", "out_"]
        .iter()
        .any(|d| port.strip_prefix(d).is_some_and(numbered));
    worker_client && generic_port
}

/// The message for a worker port named where a module port belongs.
pub fn worker_port_error(name: &str) -> String {
    format!("{name} is a modsynth worker port; name the module (like osc1:out)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ports_of_any_instance_are_told_from_module_and_foreign_ports() {
        for worker in ["qj-w09:in_1", "t123x4-w00:out_1", "a-b-w99:in_4"] {
            assert!(is_worker_port(worker), "{worker}");
        }
        for other in [
            "osc1:out",
            "system:capture_1",
            "w09:in_1",
            "qj-w9:in_1",
            "qj-w09:in",
            "qj-w09:in_",
            "qj-wx9:out_1",
            "mix-w01:in1",
            "nocolon",
        ] {
            assert!(!is_worker_port(other), "{other}");
        }
    }

    #[test]
    fn ids_that_would_break_jack_or_osc_names_are_refused() {
        for bad in [
            "",
            "1vco",
            "vco:1",
            "vco/1",
            "vco 1",
            "vcö",
            &"v".repeat(33),
        ] {
            assert!(check_module_id(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_module_id(&"v".repeat(32)).is_ok());
    }
}
