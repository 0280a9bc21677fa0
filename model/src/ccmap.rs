//! MIDI CC mappings: a controller's knob (a MIDI control change) drives one module
//! parameter between two values, along a linear or an exponential curve.
//!
//! A [`CcMap`] is checked once, against the parameter it drives ([`CcMap::check`]);
//! from then on [`CcMap::value`] turns every CC value (0..127) into a value inside
//! the parameter's range, never a NaN.
//!
//! ```
//! use modsynth_model::catalog;
//! use modsynth_model::ccmap::{CcMap, Curve};
//!
//! let vcf = catalog::module("vcf").unwrap();
//! let map = CcMap::new(74, None, "filt1", "cutoff", Some((100.0, 6400.0)), Curve::Exp);
//! let map = map.check(vcf).unwrap();
//! assert_eq!(map.value(vcf, 0), 100.0);
//! assert_eq!(map.value(vcf, 127), 6400.0);
//! assert!((map.value(vcf, 64) - 800.0).abs() < 30.0); // half way in octaves
//! assert!(CcMap::new(120, None, "filt1", "cutoff", None, Curve::Lin).check(vcf).is_err());
//! ```

use crate::catalog::ModuleSpec;

/// The highest CC number a map takes: 120..127 are channel mode messages (All
/// Sound Off, Reset All Controllers, All Notes Off, ...), not knobs.
pub const MAX_CC: u8 = 119;

/// Maps at most, per instance: bounds the supervisor's memory and `/map/list`'s
/// reply (256 maps of ~70 bytes stay far below one UDP datagram).
pub const MAX_MAPS: usize = 256;

/// How the CC's 0..127 travel from `min` to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Curve {
    /// Equal steps in the parameter's unit (levels, mixes, times).
    #[default]
    Lin,
    /// Equal ratios (linear in octaves): for frequencies and cutoffs, where a
    /// linear knob spends its first tenth on the lowest six octaves. Needs `min`
    /// and `max` above 0.
    Exp,
}

impl Curve {
    /// `lin` or `exp`.
    pub fn name(self) -> &'static str {
        match self {
            Curve::Lin => "lin",
            Curve::Exp => "exp",
        }
    }

    /// The curve named `name`.
    pub fn parse(name: &str) -> Result<Curve, String> {
        match name {
            "lin" => Ok(Curve::Lin),
            "exp" => Ok(Curve::Exp),
            other => Err(format!(
                "curve is 'lin' or 'exp', not '{}'",
                other.chars().take(32).collect::<String>()
            )),
        }
    }
}

/// One mapping: CC `cc` (on `channel`, or any channel) drives `module`.`param`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CcMap {
    /// The controller number, 0..=[`MAX_CC`].
    pub cc: u8,
    /// MIDI channel 1..=16; `None` listens on every channel.
    pub channel: Option<u8>,
    /// The module's id.
    pub module: String,
    /// The parameter's name.
    pub param: String,
    /// The parameter's value at CC 0 and at CC 127 (`min` may be above `max`: a
    /// knob turned up turns the value down). `None` until checked: the parameter's
    /// whole range.
    pub range: Option<(f32, f32)>,
    /// How the values in between are spread.
    pub curve: Curve,
}

impl CcMap {
    /// A map, not checked yet.
    pub fn new(
        cc: u8,
        channel: Option<u8>,
        module: &str,
        param: &str,
        range: Option<(f32, f32)>,
        curve: Curve,
    ) -> CcMap {
        CcMap {
            cc,
            channel,
            module: module.to_string(),
            param: param.to_string(),
            range,
            curve,
        }
    }

    /// The map checked against the module type it drives, with its range filled
    /// in: the CC and channel are in range, the parameter exists, `min` and `max`
    /// are finite and inside the parameter's range, and an exponential curve has
    /// both above 0. An enum parameter steps through its values (lin only).
    pub fn check(mut self, spec: &ModuleSpec) -> Result<CcMap, String> {
        check_cc(self.cc as i64)?;
        if let Some(ch) = self.channel.filter(|c| !(1..=16).contains(c)) {
            return Err(format!("MIDI channel {ch}: channels are 1..16"));
        }
        let index = spec.param_index(&self.param).ok_or_else(|| {
            let names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
            format!(
                "{} has no parameter '{}' (parameters: {})",
                spec.name,
                self.param,
                names.join(", ")
            )
        })?;
        let p = &spec.params[index];
        let (lo, hi) = if p.is_enum() {
            (0.0, (p.values.len() - 1) as f32)
        } else {
            (p.min, p.max)
        };
        let (min, max) = self.range.unwrap_or((lo, hi));
        for v in [min, max] {
            if !v.is_finite() || v < lo || v > hi {
                return Err(format!(
                    "{}.{} takes {lo}..{hi}; the map's range {min}..{max} is outside it",
                    self.module, self.param
                ));
            }
        }
        if self.curve == Curve::Exp && (min <= 0.0 || max <= 0.0) {
            return Err(format!(
                "an exp curve needs min and max above 0 (got {min}..{max}); use lin"
            ));
        }
        if self.curve == Curve::Exp && p.is_enum() {
            return Err(format!(
                "{}.{} is a choice of names: use lin",
                self.module, self.param
            ));
        }
        self.range = Some((min, max));
        Ok(self)
    }

    /// The parameter's value (an enum's value index) for CC value `cc_value`
    /// (0..127; more is taken as 127). Call it on a checked map.
    pub fn value(&self, spec: &ModuleSpec, cc_value: u8) -> f32 {
        let x = cc_value.min(127) as f32 / 127.0;
        let (min, max) = self.range.unwrap_or((0.0, 0.0));
        let v = match self.curve {
            Curve::Lin => min + (max - min) * x,
            Curve::Exp => min * (max / min).powf(x),
        };
        // Exact ends (powf is not), and never outside the range or NaN.
        let v = match cc_value {
            0 => min,
            127.. => max,
            _ => v,
        };
        let v = if v.is_finite() { v } else { min };
        let v = v.clamp(min.min(max), min.max(max));
        match spec.param_index(&self.param).map(|i| &spec.params[i]) {
            Some(p) if p.is_enum() => v.round(),
            _ => v,
        }
    }

    /// Whether a CC `cc` on `channel` (1..16) moves this map.
    pub fn listens_to(&self, channel: u8, cc: u8) -> bool {
        self.cc == cc && self.channel.is_none_or(|c| c == channel)
    }
}

/// A CC number as given (OSC, CLI, set file): 0..=[`MAX_CC`].
pub fn check_cc(cc: i64) -> Result<u8, String> {
    if (0..=MAX_CC as i64).contains(&cc) {
        Ok(cc as u8)
    } else {
        Err(format!(
            "CC {cc} cannot be mapped: CC numbers are 0..{MAX_CC} (120..127 are channel mode messages)"
        ))
    }
}

/// A MIDI channel as given: 1..16, or 0 for every channel (`None`).
pub fn check_channel(channel: i64) -> Result<Option<u8>, String> {
    match channel {
        0 => Ok(None),
        1..=16 => Ok(Some(channel as u8)),
        _ => Err(format!(
            "MIDI channel {channel}: channels are 1..16 (0 = any channel)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    #[test]
    fn every_cc_value_gives_a_value_inside_the_range_and_in_order() {
        let vco = catalog::module("vco").unwrap();
        for (range, curve) in [
            (Some((20.0, 2000.0)), Curve::Exp),
            (Some((2000.0, 20.0)), Curve::Exp),
            (None, Curve::Lin),
            (Some((440.0, 110.0)), Curve::Lin),
        ] {
            let m = CcMap::new(1, Some(3), "o", "freq", range, curve)
                .check(vco)
                .unwrap();
            let (min, max) = m.range.unwrap();
            let values: Vec<f32> = (0..=127).map(|v| m.value(vco, v)).collect();
            assert_eq!((values[0], values[127]), (min, max));
            for w in values.windows(2) {
                assert!(
                    w[0].is_finite() && (w[1] - w[0]) * (max - min) >= 0.0,
                    "{w:?}"
                );
            }
        }
    }

    #[test]
    fn enum_parameters_step_through_their_values() {
        let vco = catalog::module("vco").unwrap();
        let m = CcMap::new(1, None, "o", "wave", None, Curve::Lin)
            .check(vco)
            .unwrap();
        let n = vco.params[vco.param_index("wave").unwrap()].values.len() as f32;
        assert_eq!(m.value(vco, 0), 0.0);
        assert_eq!(m.value(vco, 127), n - 1.0);
        assert!(
            CcMap::new(1, None, "o", "wave", Some((1.0, 2.0)), Curve::Exp)
                .check(vco)
                .is_err()
        );
    }

    #[test]
    fn bad_numbers_ranges_and_curves_are_refused_with_what_is_allowed() {
        let vco = catalog::module("vco").unwrap();
        let e = |m: CcMap| m.check(vco).unwrap_err();
        assert!(e(CcMap::new(120, None, "o", "freq", None, Curve::Lin)).contains("0..119"));
        assert!(e(CcMap::new(1, Some(17), "o", "freq", None, Curve::Lin)).contains("1..16"));
        assert!(e(CcMap::new(1, Some(0), "o", "freq", None, Curve::Lin)).contains("1..16"));
        assert!(e(CcMap::new(1, None, "o", "nope", None, Curve::Lin)).contains("parameters: freq"));
        assert!(e(CcMap::new(
            1,
            None,
            "o",
            "freq",
            Some((f32::NAN, 1.0)),
            Curve::Lin
        ))
        .contains("outside"));
        assert!(e(CcMap::new(
            1,
            None,
            "o",
            "freq",
            Some((1.0, 1e9)),
            Curve::Lin
        ))
        .contains("outside"));
        assert!(e(CcMap::new(
            1,
            None,
            "o",
            "gain",
            Some((0.0, 1.0)),
            Curve::Exp
        ))
        .contains("above 0"));
        assert!(Curve::parse("log").unwrap_err().contains("'lin' or 'exp'"));
        assert!(check_channel(-1).is_err() && check_channel(0) == Ok(None));
        assert!(check_cc(-1).is_err() && check_cc(119) == Ok(119));
    }
}
