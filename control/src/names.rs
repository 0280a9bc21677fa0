//! Module ids: the names users give modules.
//!
//! An id becomes part of JACK port names (`vco1:out`), of OSC addresses (`/vco1/freq`)
//! and of shared-memory segment names, so it is kept to characters all three accept.
//!
//! ```
//! use modsynth_control::names::check_module_id;
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

#[cfg(test)]
mod tests {
    use super::*;

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
