//! Parameter validation: turns what a user typed or sent into a value the DSP may use.
//!
//! Nothing reaches a module unchecked: a value must be finite and inside the range the
//! catalog gives, and an enum parameter must name one of its values. Errors name the
//! module, the parameter and what would have been accepted.
//!
//! ```
//! use modsynth_model::{catalog, param::{self, Value}};
//!
//! let vco = catalog::module("vco").unwrap();
//! assert_eq!(param::validate(vco, "wave", Value::Text("saw")).unwrap(), (1, 1.0));
//! let err = param::validate(vco, "freq", Value::Float(f32::NAN)).unwrap_err();
//! assert!(err.to_string().contains("0.1..20000"));
//! ```

use crate::catalog::{ModuleSpec, ParamSpec};
use std::fmt;

/// A parameter value as it arrives: a number, or text (an enum name or a number
/// written out, as on a command line).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// A number (an OSC float or int); for an enum parameter, the index of a value.
    Float(f32),
    /// Text: a number written out, or the name of an enum parameter's value.
    Text(&'a str),
}

/// Why a parameter value was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamError {
    /// The module has no parameter of that name.
    UnknownParam {
        /// The module type.
        module: &'static str,
        /// The name as given.
        param: String,
    },
    /// NaN or infinite.
    NotFinite {
        /// The module type.
        module: &'static str,
        /// The parameter.
        spec: &'static ParamSpec,
    },
    /// Outside `min..=max`.
    OutOfRange {
        /// The module type.
        module: &'static str,
        /// The parameter, with its range.
        spec: &'static ParamSpec,
        /// The value given.
        value: f32,
    },
    /// Not one of an enum parameter's values.
    UnknownChoice {
        /// The module type.
        module: &'static str,
        /// The parameter, with its values.
        spec: &'static ParamSpec,
        /// The text given.
        given: String,
    },
    /// Text that is not a number, for a numeric parameter.
    NotANumber {
        /// The module type.
        module: &'static str,
        /// The parameter's name.
        param: &'static str,
        /// The text given.
        given: String,
    },
    /// A `PARAM=VALUE` argument without `=`.
    NotAnAssignment {
        /// The argument given.
        given: String,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::UnknownParam { module, param } => {
                let known: Vec<&str> = crate::catalog::module(module)
                    .map(|m| m.params.iter().map(|p| p.name).collect())
                    .unwrap_or_default();
                write!(
                    f,
                    "{module} has no parameter '{param}' (it has: {})",
                    known.join(", ")
                )
            }
            ParamError::NotFinite { module, spec } => {
                write!(
                    f,
                    "{module}.{} must be a finite number in {}",
                    spec.name,
                    range(spec)
                )
            }
            ParamError::OutOfRange {
                module,
                spec,
                value,
            } => {
                write!(
                    f,
                    "{module}.{} = {value} is out of range {}",
                    spec.name,
                    range(spec)
                )
            }
            ParamError::UnknownChoice {
                module,
                spec,
                given,
            } => write!(
                f,
                "{module}.{} cannot be '{given}' (choose one of: {})",
                spec.name,
                spec.values.join(", ")
            ),
            ParamError::NotANumber {
                module,
                param,
                given,
            } => {
                write!(f, "{module}.{param} needs a number, got '{given}'")
            }
            ParamError::NotAnAssignment { given } => {
                write!(f, "'{given}' is not PARAM=VALUE")
            }
        }
    }
}

impl std::error::Error for ParamError {}

/// `min..max unit`, or the list of choices of an enum parameter.
fn range(spec: &ParamSpec) -> String {
    if spec.is_enum() {
        format!("({})", spec.values.join(", "))
    } else if spec.unit.is_empty() {
        format!("{}..{}", spec.min, spec.max)
    } else {
        format!("{}..{} {}", spec.min, spec.max, spec.unit)
    }
}

/// Checks `value` for the parameter `name` of `module`; returns the parameter's index
/// and the value to store (an enum's index for an enum parameter).
pub fn validate(
    module: &'static ModuleSpec,
    name: &str,
    value: Value<'_>,
) -> Result<(usize, f32), ParamError> {
    let index = module
        .param_index(name)
        .ok_or_else(|| ParamError::UnknownParam {
            module: module.name,
            param: name.to_string(),
        })?;
    let spec = &module.params[index];
    let number = match value {
        Value::Float(v) => v,
        Value::Text(text) => {
            let text = text.trim();
            if let Some(i) = spec.values.iter().position(|v| *v == text) {
                return Ok((index, i as f32));
            }
            match text.parse::<f32>() {
                Ok(v) => v,
                Err(_) if spec.is_enum() => {
                    return Err(ParamError::UnknownChoice {
                        module: module.name,
                        spec,
                        given: text.to_string(),
                    })
                }
                Err(_) => {
                    return Err(ParamError::NotANumber {
                        module: module.name,
                        param: spec.name,
                        given: text.to_string(),
                    })
                }
            }
        }
    };
    if !number.is_finite() {
        return Err(ParamError::NotFinite {
            module: module.name,
            spec,
        });
    }
    if spec.is_enum() && (number.fract() != 0.0 || number < spec.min || number > spec.max) {
        return Err(ParamError::UnknownChoice {
            module: module.name,
            spec,
            given: number.to_string(),
        });
    }
    if number < spec.min || number > spec.max {
        return Err(ParamError::OutOfRange {
            module: module.name,
            spec,
            value: number,
        });
    }
    Ok((index, number))
}

/// Parses and checks one `PARAM=VALUE` argument, as given on a command line.
///
/// ```
/// use modsynth_model::{catalog, param};
///
/// let vcf = catalog::module("vcf").unwrap();
/// assert_eq!(param::parse_assignment(vcf, "cutoff=2000").unwrap(), (1, 2000.0));
/// assert!(param::parse_assignment(vcf, "cutoff").is_err());
/// ```
pub fn parse_assignment(
    module: &'static ModuleSpec,
    arg: &str,
) -> Result<(usize, f32), ParamError> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| ParamError::NotAnAssignment {
            given: arg.to_string(),
        })?;
    validate(module, name.trim(), Value::Text(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    #[test]
    fn every_parameter_rejects_non_finite_values() {
        for m in catalog::modules() {
            for p in m.params {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let err = validate(m, p.name, Value::Float(bad)).unwrap_err();
                    assert!(
                        matches!(err, ParamError::NotFinite { .. }),
                        "{}.{} accepted {bad}",
                        m.name,
                        p.name
                    );
                }
                let err = validate(m, p.name, Value::Text("nan")).unwrap_err();
                assert!(!err.to_string().is_empty());
            }
        }
    }

    #[test]
    fn every_parameter_rejects_out_of_range_values_naming_the_range() {
        for m in catalog::modules() {
            for p in m.params {
                let span = (p.max - p.min).max(1.0);
                for bad in [p.min - span, p.max + span] {
                    let err = validate(m, p.name, Value::Float(bad)).unwrap_err();
                    let text = err.to_string();
                    if p.is_enum() {
                        assert!(text.contains(p.values[0]), "{text}");
                    } else {
                        let range = format!("{}..{}", p.min, p.max);
                        assert!(text.contains(&range), "{}.{}: {text}", m.name, p.name);
                    }
                }
                assert!(validate(m, p.name, Value::Float(p.min)).is_ok());
                assert!(validate(m, p.name, Value::Float(p.max)).is_ok());
                assert_eq!(
                    validate(m, p.name, Value::Float(p.default)).unwrap().1,
                    p.default
                );
            }
        }
    }

    #[test]
    fn enum_params_take_names_or_indices() {
        let vcf = catalog::module("vcf").unwrap();
        assert_eq!(
            validate(vcf, "mode", Value::Text("highpass")).unwrap(),
            (0, 2.0)
        );
        assert_eq!(validate(vcf, "mode", Value::Float(1.0)).unwrap(), (0, 1.0));
        assert!(validate(vcf, "mode", Value::Float(1.5)).is_err());
        let err = validate(vcf, "mode", Value::Text("notch")).unwrap_err();
        assert!(err.to_string().contains("lowpass, bandpass, highpass"));
    }

    #[test]
    fn unknown_params_list_the_known_ones() {
        let vca = catalog::module("vca").unwrap();
        let err = validate(vca, "volume", Value::Float(1.0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vca has no parameter 'volume' (it has: gain)"
        );
    }

    #[test]
    fn text_that_is_not_a_number_is_refused() {
        let vco = catalog::module("vco").unwrap();
        let err = parse_assignment(vco, "freq=loud").unwrap_err();
        assert_eq!(err.to_string(), "vco.freq needs a number, got 'loud'");
    }
}
