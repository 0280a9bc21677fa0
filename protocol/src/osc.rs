//! The OSC address space as types: decoding requests, encoding replies.
//!
//! Decoding checks everything that can be checked without knowing which modules are
//! running: the address, argument count and types, module types, ids and the
//! parameters given to `/module/new`. What depends on running modules (unknown id,
//! a parameter of an existing module) is checked by the supervisor, with the same
//! error types.
//!
//! Every refusal becomes a [`Fail`], sent back as `/fail <address> <reason>`.
//!
//! ```
//! use modsynth_protocol::osc::{decode, Request};
//! use rosc::{OscMessage, OscType};
//!
//! let msg = OscMessage {
//!     addr: "/module/new".into(),
//!     args: vec![OscType::String("vco".into()), OscType::String("vco1".into()),
//!                OscType::String("freq".into()), OscType::Float(220.0)],
//! };
//! let Request::New { spec, id, params, .. } = decode(&msg).unwrap() else { panic!() };
//! assert_eq!((spec.name, id.as_str(), params), ("vco", "vco1", vec![(0, 220.0)]));
//! ```

use crate::setfile::check_set_name;
use modsynth_model::catalog::{self, ModuleSpec};
use modsynth_model::ccmap::{self, CcMap, Curve};
use modsynth_model::names::check_module_id;
use modsynth_model::param::{self, Value};
use rosc::{OscMessage, OscPacket, OscType};

/// An argument that is either a number or text, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// A number (an OSC float or int).
    Float(f32),
    /// Text: a number written out, or an enum parameter's value name.
    Text(String),
}

impl Arg {
    /// Borrowed as a [`param::Value`] for validation.
    pub fn as_value(&self) -> Value<'_> {
        match self {
            Arg::Float(v) => Value::Float(*v),
            Arg::Text(t) => Value::Text(t),
        }
    }
}

/// Whether a module gets a hot standby worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Standby {
    /// One standby per module (the default).
    #[default]
    Hot,
    /// No standby: a crash is recovered from a pool spare, more slowly.
    None,
}

/// One request, checked as far as it can be without the supervisor's state.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `/module/new type id [param value]...`
    New {
        /// The module type.
        spec: &'static ModuleSpec,
        /// The new module's id.
        id: String,
        /// Checked parameter values: (index in the catalog, value).
        params: Vec<(usize, f32)>,
        /// Whether it gets a hot standby.
        standby: Standby,
    },
    /// `/module/free id`
    Free {
        /// The module to free.
        id: String,
    },
    /// `/module/set id param value`, or `/<id>/<param> value`.
    Set {
        /// The module.
        id: String,
        /// The parameter's name.
        param: String,
        /// The value, checked against the module's type by the supervisor.
        value: Arg,
    },
    /// `/module/get id param`
    Get {
        /// The module.
        id: String,
        /// The parameter's name.
        param: String,
    },
    /// `/patch/connect src dst`
    Connect {
        /// The output port (`module:port` or a JACK port).
        src: String,
        /// The input port.
        dst: String,
    },
    /// `/patch/disconnect src dst`
    Disconnect {
        /// The output port.
        src: String,
        /// The input port.
        dst: String,
    },
    /// `/set/load name [replace [atomic]]`: with replace 1, modules not in the file
    /// are freed; with atomic 1, nothing changes at all unless every create
    /// succeeds. `path` is a name in the sets directory ([`check_set_name`]).
    LoadSet {
        /// The set's name in the sets directory.
        path: String,
        /// Whether modules not in the file are freed.
        replace: bool,
        /// Whether a failed create undoes the whole load.
        atomic: bool,
    },
    /// `/set/prepare name [as]`: builds set file `name` (in the sets directory)
    /// silently beside what plays, as prepared set `as` (default: the file name
    /// without `.toml`), for a later `/set/switch`.
    PrepareSet {
        /// The set file's name in the sets directory.
        path: String,
        /// The prepared set's name ([`check_prepared_name`]).
        name: String,
    },
    /// `/set/switch name [fade_ms [bar|next_bar N]]`: the prepared set replaces
    /// what plays, at the frame of the bundle's timetag, on the first frame of a
    /// bar of the playing sequencer, or at once, crossfading over `fade_ms`.
    SwitchSet {
        /// The prepared set's name.
        name: String,
        /// The crossfade, ms (0 to [`MAX_SWITCH_FADE_MS`]).
        fade_ms: u32,
        /// The bar of the playing `seq` the switch lands on, if one is named.
        on_bar: Option<OnBar>,
    },
    /// `/set/save name`, a name in the sets directory.
    SaveSet {
        /// The set's name in the sets directory.
        path: String,
    },
    /// `/set/dir`: where the sets directory is (`/done /set/dir PATH`).
    SetsDir,
    /// `/status`
    Status,
    /// `/notify 1|0`
    Notify {
        /// Subscribe (true) or unsubscribe.
        on: bool,
    },
    /// `/sync id`
    Sync {
        /// Repeated in the reply `/synced id`.
        id: i32,
    },
    /// `/map/cc cc channel id param [min max] [curve]`: CC `cc` drives a
    /// parameter. Checked here except against the module (the supervisor does that).
    MapCc {
        /// The map; `range` `None` for the parameter's whole range.
        map: CcMap,
    },
    /// `/map/learn id param [min max] [curve]`: the next CC moved drives it.
    Learn {
        /// The map to make, its CC and channel taken from the next CC that arrives.
        map: CcMap,
    },
    /// `/map/unmap id param`
    Unmap {
        /// The module.
        id: String,
        /// The parameter.
        param: String,
    },
    /// `/map/list`
    ListMaps,
}

/// A refused request: becomes `/fail <address> <reason>`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fail {
    /// The address of the refused request.
    pub address: String,
    /// Why, for the user.
    pub reason: String,
}

impl Fail {
    /// A refusal of a request to `address`.
    pub fn new(address: &str, reason: impl Into<String>) -> Fail {
        Fail {
            address: address.to_string(),
            reason: reason.into(),
        }
    }

    /// The `/fail` message. Address and reason are cut to [`MAX_TEXT`] bytes each:
    /// a refusal quotes what it refuses, and must not grow into an amplifier.
    pub fn to_message(&self) -> OscMessage {
        message(
            "/fail",
            vec![text(cut(&self.address)), text(cut(&self.reason))],
        )
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.address, self.reason)
    }
}

/// `s` cut to at most [`MAX_TEXT`] bytes, on a character boundary.
fn cut(s: &str) -> &str {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Builds an OSC message.
pub fn message(addr: &str, args: Vec<OscType>) -> OscMessage {
    OscMessage {
        addr: addr.to_string(),
        args,
    }
}

/// An OSC string argument.
pub fn text(s: &str) -> OscType {
    OscType::String(s.to_string())
}

/// `/done <address> [args]`
pub fn done(address: &str, mut args: Vec<OscType>) -> OscMessage {
    args.insert(0, text(address));
    message("/done", args)
}

/// Encodes a message as one UDP datagram.
pub fn encode(msg: OscMessage) -> Vec<u8> {
    // Encoding a message we built ourselves cannot fail (no unencodable types).
    rosc::encoder::encode(&OscPacket::Message(msg)).unwrap_or_default()
}

fn describe(arg: &OscType) -> &'static str {
    match arg {
        OscType::Int(_) => "int",
        OscType::Float(_) => "float",
        OscType::Double(_) => "double",
        OscType::Long(_) => "long",
        OscType::String(_) => "string",
        OscType::Blob(_) => "blob",
        OscType::Bool(_) => "bool",
        _ => "other",
    }
}

struct Args<'a> {
    address: &'a str,
    args: &'a [OscType],
}

impl<'a> Args<'a> {
    fn count(&self, n: usize, usage: &str) -> Result<(), Fail> {
        if self.args.len() == n {
            Ok(())
        } else {
            Err(Fail::new(
                self.address,
                format!("takes {usage}, got {} argument(s)", self.args.len()),
            ))
        }
    }

    fn string(&self, i: usize, what: &str) -> Result<&'a str, Fail> {
        match self.args.get(i) {
            Some(OscType::String(s)) => {
                check_text(s).map_err(|e| Fail::new(self.address, format!("{what}: {e}")))?;
                Ok(s)
            }
            Some(other) => Err(Fail::new(
                self.address,
                format!(
                    "argument {} ({what}) must be a string, got {}",
                    i + 1,
                    describe(other)
                ),
            )),
            None => Err(Fail::new(
                self.address,
                format!("missing argument {} ({what})", i + 1),
            )),
        }
    }

    fn value(&self, i: usize) -> Result<Arg, Fail> {
        let value = self.any_value(i)?;
        match value {
            // Checked again against the parameter's range later; refused here
            // already so that no NaN travels further than the decoder.
            Arg::Float(v) if !v.is_finite() => Err(Fail::new(
                self.address,
                format!(
                    "argument {} (value) must be a finite number, got {v}",
                    i + 1
                ),
            )),
            value => Ok(value),
        }
    }

    fn any_value(&self, i: usize) -> Result<Arg, Fail> {
        match self.args.get(i) {
            Some(OscType::Float(v)) => Ok(Arg::Float(*v)),
            Some(OscType::Double(v)) => Ok(Arg::Float(*v as f32)),
            Some(OscType::Int(v)) => Ok(Arg::Float(*v as f32)),
            Some(OscType::Long(v)) => Ok(Arg::Float(*v as f32)),
            Some(OscType::String(s)) => {
                check_text(s).map_err(|e| Fail::new(self.address, format!("value: {e}")))?;
                Ok(Arg::Text(s.clone()))
            }
            Some(other) => Err(Fail::new(
                self.address,
                format!(
                    "argument {} (value) must be a number or string, got {}",
                    i + 1,
                    describe(other)
                ),
            )),
            None => Err(Fail::new(
                self.address,
                format!("missing argument {} (value)", i + 1),
            )),
        }
    }

    fn int(&self, i: usize, what: &str) -> Result<i32, Fail> {
        match self.args.get(i) {
            Some(OscType::Int(v)) => Ok(*v),
            Some(OscType::Float(v)) if v.fract() == 0.0 && v.abs() < 1e9 => Ok(*v as i32),
            Some(other) => Err(Fail::new(
                self.address,
                format!(
                    "argument {} ({what}) must be an int, got {}",
                    i + 1,
                    describe(other)
                ),
            )),
            None => Err(Fail::new(
                self.address,
                format!("missing argument {} ({what})", i + 1),
            )),
        }
    }

    fn id(&self, i: usize) -> Result<String, Fail> {
        let id = self.string(i, "module id")?;
        check_module_id(id).map_err(|e| Fail::new(self.address, e))?;
        Ok(id.to_string())
    }
}

/// Which bar of the playing sequencer a `/set/switch` lands on. A bar is one pass
/// through the `seq`'s pattern (`steps` steps); bar 1 begins on its first step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBar {
    /// `bar N`: bar `N` (1 or more) counted from the sequencer's start.
    Bar(u32),
    /// `next_bar K`: the `K`-th bar to begin from now (1: the next one).
    Next(u32),
}

/// The longest crossfade `/set/switch` takes, ms.
pub const MAX_SWITCH_FADE_MS: u32 = 10_000;

/// The crossfade of a `/set/switch` that names none, ms: as long as a module's
/// fade-out on free, so neither set starts or stops with a click.
pub const DEFAULT_SWITCH_FADE_MS: u32 = 5;

/// Checks a prepared set's name: the rules of a module id (a letter first, then
/// letters, digits, `_` and `-`, at most 32), because it names the prepared
/// modules (`<name>.<id>`) until the switch.
///
/// ```
/// use modsynth_protocol::osc::check_prepared_name;
///
/// assert!(check_prepared_name("song-2").is_ok());
/// assert!(check_prepared_name("my set").is_err());
/// ```
pub fn check_prepared_name(name: &str) -> Result<(), String> {
    check_module_id(name).map_err(|_| {
        format!(
            "'{}' cannot name a prepared set: use a letter, then letters, digits, '_' or '-' \
             (at most 32; `modsynth set prepare FILE --as NAME` names it)",
            name.chars().take(64).collect::<String>()
        )
    })
}

/// Decodes and checks one message.
pub fn decode(msg: &OscMessage) -> Result<Request, Fail> {
    let a = Args {
        address: &msg.addr,
        args: &msg.args,
    };
    match msg.addr.as_str() {
        "/module/new" => decode_new(&a),
        "/module/free" => {
            a.count(1, "id")?;
            Ok(Request::Free { id: a.id(0)? })
        }
        "/module/set" => {
            a.count(3, "id, param, value")?;
            Ok(Request::Set {
                id: a.id(0)?,
                param: a.string(1, "param")?.into(),
                value: a.value(2)?,
            })
        }
        "/module/get" => {
            a.count(2, "id, param")?;
            Ok(Request::Get {
                id: a.id(0)?,
                param: a.string(1, "param")?.into(),
            })
        }
        "/patch/connect" | "/patch/disconnect" => {
            a.count(2, "source port, destination port")?;
            let src = a.string(0, "source port")?.to_string();
            let dst = a.string(1, "destination port")?.to_string();
            for p in [&src, &dst] {
                check_port_name(p).map_err(|e| Fail::new(&msg.addr, e))?;
            }
            if msg.addr == "/patch/connect" {
                Ok(Request::Connect { src, dst })
            } else {
                Ok(Request::Disconnect { src, dst })
            }
        }
        "/set/load" => {
            if a.args.is_empty() || a.args.len() > 3 {
                a.count(1, "path, then optionally replace and atomic (1 or 0)")?;
            }
            let path = a.string(0, "set name")?.to_string();
            check_set_name(&path).map_err(|e| Fail::new(&msg.addr, e))?;
            let flag = |i: usize, what: &str| -> Result<bool, Fail> {
                Ok(a.args.len() > i && a.int(i, what)? != 0)
            };
            let replace = flag(1, "replace (1 or 0)")?;
            let atomic = flag(2, "atomic (1 or 0)")?;
            Ok(Request::LoadSet {
                path,
                replace,
                atomic,
            })
        }
        "/set/prepare" => {
            if a.args.is_empty() || a.args.len() > 2 {
                a.count(1, "set file name, then optionally the prepared set's name")?;
            }
            let path = a.string(0, "set name")?.to_string();
            check_set_name(&path).map_err(|e| Fail::new(&msg.addr, e))?;
            let name = if a.args.len() == 2 {
                a.string(1, "prepared set name")?.to_string()
            } else {
                path.strip_suffix(".toml").unwrap_or(&path).to_string()
            };
            check_prepared_name(&name).map_err(|e| Fail::new(&msg.addr, e))?;
            Ok(Request::PrepareSet { path, name })
        }
        "/set/switch" => {
            if a.args.is_empty() || a.args.len() == 3 || a.args.len() > 4 {
                a.count(
                    1,
                    "prepared set name, then optionally the crossfade in ms, then optionally \
                     'bar' N or 'next_bar' K",
                )?;
            }
            let name = a.string(0, "prepared set name")?.to_string();
            check_prepared_name(&name).map_err(|e| Fail::new(&msg.addr, e))?;
            let fade_ms = if a.args.len() >= 2 {
                let ms = a.int(1, "crossfade (ms, an integer)")?;
                if !(0..=MAX_SWITCH_FADE_MS as i32).contains(&ms) {
                    return Err(Fail::new(
                        &msg.addr,
                        format!("crossfade {ms} ms: give 0 to {MAX_SWITCH_FADE_MS} ms"),
                    ));
                }
                ms as u32
            } else {
                DEFAULT_SWITCH_FADE_MS
            };
            let on_bar = if a.args.len() == 4 {
                let n = a.int(3, "bar number (an integer, 1 or more)")?;
                let n = u32::try_from(n)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| Fail::new(&msg.addr, format!("bar {n}: give 1 or more")))?;
                match a.string(2, "'bar' or 'next_bar'")? {
                    "bar" => Some(OnBar::Bar(n)),
                    "next_bar" => Some(OnBar::Next(n)),
                    other => {
                        return Err(Fail::new(
                            &msg.addr,
                            format!("'{other}': give 'bar' N (bar N of the playing seq) or 'next_bar' K (the K-th bar from now)"),
                        ))
                    }
                }
            } else {
                None
            };
            Ok(Request::SwitchSet {
                name,
                fade_ms,
                on_bar,
            })
        }
        "/set/save" => {
            a.count(1, "set name")?;
            let path = a.string(0, "set name")?.to_string();
            check_set_name(&path).map_err(|e| Fail::new(&msg.addr, e))?;
            Ok(Request::SaveSet { path })
        }
        "/set/dir" => {
            a.count(0, "no arguments")?;
            Ok(Request::SetsDir)
        }
        "/status" => {
            a.count(0, "no arguments")?;
            Ok(Request::Status)
        }
        "/notify" => {
            a.count(1, "1 or 0")?;
            match a.int(0, "1 or 0")? {
                0 => Ok(Request::Notify { on: false }),
                1 => Ok(Request::Notify { on: true }),
                n => Err(Fail::new(&msg.addr, format!("takes 1 or 0, got {n}"))),
            }
        }
        "/sync" => {
            a.count(1, "an int id")?;
            Ok(Request::Sync {
                id: a.int(0, "sync id")?,
            })
        }
        "/map/cc" => {
            if !(4..=7).contains(&a.args.len()) {
                a.count(
                    4,
                    "cc, channel, id, param, then optionally min max, then optionally a curve",
                )?;
            }
            let cc =
                ccmap::check_cc(a.int(0, "cc")? as i64).map_err(|e| Fail::new(&msg.addr, e))?;
            let channel = ccmap::check_channel(a.int(1, "channel (0 = any)")? as i64)
                .map_err(|e| Fail::new(&msg.addr, e))?;
            let (range, curve) = decode_range_curve(&a, 4)?;
            let map = CcMap::new(cc, channel, &a.id(2)?, a.string(3, "param")?, range, curve);
            Ok(Request::MapCc { map })
        }
        "/map/learn" => {
            if !(2..=5).contains(&a.args.len()) {
                a.count(
                    2,
                    "id, param, then optionally min max, then optionally a curve",
                )?;
            }
            let (range, curve) = decode_range_curve(&a, 2)?;
            let map = CcMap::new(0, None, &a.id(0)?, a.string(1, "param")?, range, curve);
            Ok(Request::Learn { map })
        }
        "/map/unmap" => {
            a.count(2, "id, param")?;
            Ok(Request::Unmap {
                id: a.id(0)?,
                param: a.string(1, "param")?.into(),
            })
        }
        "/map/list" => {
            a.count(0, "no arguments")?;
            Ok(Request::ListMaps)
        }
        addr => decode_shortcut(addr, &a),
    }
}

/// The optional `[min max] [curve]` tail of `/map/cc` and `/map/learn`, from
/// argument `first` on.
fn decode_range_curve(a: &Args, first: usize) -> Result<(Option<(f32, f32)>, Curve), Fail> {
    let rest = a.args.len() - first;
    let number = |i: usize, what: &str| match a.value(i)? {
        Arg::Float(v) => Ok(v),
        Arg::Text(_) => Err(Fail::new(
            a.address,
            format!("argument {} ({what}) must be a number", i + 1),
        )),
    };
    let range = if rest >= 2 {
        Some((number(first, "min")?, number(first + 1, "max")?))
    } else {
        None
    };
    let curve = if rest % 2 == 1 {
        Curve::parse(a.string(a.args.len() - 1, "curve (lin or exp)")?)
            .map_err(|e| Fail::new(a.address, e))?
    } else {
        Curve::Lin
    };
    Ok((range, curve))
}

fn decode_new(a: &Args) -> Result<Request, Fail> {
    if a.args.len() < 2 || !a.args.len().is_multiple_of(2) {
        return Err(Fail::new(
            a.address,
            format!(
                "takes type, id, then param/value pairs; got {} argument(s)",
                a.args.len()
            ),
        ));
    }
    let type_name = a.string(0, "module type")?;
    let spec = catalog::lookup(type_name).map_err(|e| Fail::new(a.address, e))?;
    let id = a.id(1)?;
    let mut params = Vec::new();
    let mut standby = Standby::Hot;
    for i in (2..a.args.len()).step_by(2) {
        let name = a.string(i, "param name")?;
        let value = a.value(i + 1)?;
        if name == "standby" {
            standby = match &value {
                Arg::Text(t) if t == "none" => Standby::None,
                Arg::Text(t) if t == "hot" => Standby::Hot,
                _ => return Err(Fail::new(a.address, "standby is 'hot' or 'none'")),
            };
            continue;
        }
        let checked = param::validate(spec, name, value.as_value())
            .map_err(|e| Fail::new(a.address, e.to_string()))?;
        if params.iter().any(|&(i, _)| i == checked.0) {
            return Err(Fail::new(a.address, format!("{name} is given twice")));
        }
        params.push(checked);
    }
    Ok(Request::New {
        spec,
        id,
        params,
        standby,
    })
}

/// `/<id>/<param> value`, the form controllers like TouchOSC send.
fn decode_shortcut(addr: &str, a: &Args) -> Result<Request, Fail> {
    let mut parts = addr.strip_prefix('/').unwrap_or("").split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(param), None)
            if check_module_id(id).is_ok() && !param.is_empty() && check_text(param).is_ok() =>
        {
            a.count(1, "one value")?;
            Ok(Request::Set {
                id: id.to_string(),
                param: param.to_string(),
                value: a.value(0)?,
            })
        }
        _ => Err(Fail::new(addr, "unknown address (see docs/osc.md)")),
    }
}

/// The longest string argument taken (a JACK port name is at most 320 bytes; a
/// set name far less). Longer ones are refused without being quoted back.
pub const MAX_TEXT: usize = 1024;

/// A string argument: at most [`MAX_TEXT`] bytes and no control characters
/// (newlines, escapes, NUL), which could end up in set files, logs and terminals.
pub fn check_text(s: &str) -> Result<(), String> {
    if s.len() > MAX_TEXT {
        Err(format!("a string of {} bytes; at most {MAX_TEXT}", s.len()))
    } else if s.chars().any(char::is_control) {
        Err(format!(
            "{:?} holds a control character",
            s.chars().take(64).collect::<String>()
        ))
    } else {
        Ok(())
    }
}

/// A JACK port name as `client:port`, checked for shape only; no control
/// characters anywhere.
pub fn check_port_name(name: &str) -> Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err(format!("port name {name:?} holds a control character"));
    }
    match name.split_once(':') {
        Some((client, port)) if !client.is_empty() && !port.is_empty() && name.len() <= 320 => {
            Ok(())
        }
        _ => Err(format!(
            "'{name}' is not a port name like vco1:out or system:playback_1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(addr: &str, args: Vec<OscType>) -> OscMessage {
        message(addr, args)
    }

    fn s(v: &str) -> OscType {
        text(v)
    }

    fn fail_reason(m: OscMessage) -> String {
        decode(&m).unwrap_err().reason
    }

    #[test]
    fn prepare_and_switch_check_names_and_the_crossfade() {
        assert_eq!(
            decode(&msg("/set/prepare", vec![s("song-2.toml")])),
            Ok(Request::PrepareSet {
                path: "song-2.toml".into(),
                name: "song-2".into()
            })
        );
        assert_eq!(
            decode(&msg("/set/switch", vec![s("b"), OscType::Int(250)])),
            Ok(Request::SwitchSet {
                name: "b".into(),
                fade_ms: 250,
                on_bar: None
            })
        );
        assert_eq!(
            decode(&msg("/set/switch", vec![s("b")])),
            Ok(Request::SwitchSet {
                name: "b".into(),
                fade_ms: DEFAULT_SWITCH_FADE_MS,
                on_bar: None
            })
        );
        assert_eq!(
            decode(&msg(
                "/set/switch",
                vec![s("b"), OscType::Int(0), s("bar"), OscType::Int(3)]
            )),
            Ok(Request::SwitchSet {
                name: "b".into(),
                fade_ms: 0,
                on_bar: Some(OnBar::Bar(3))
            })
        );
        assert_eq!(
            decode(&msg(
                "/set/switch",
                vec![s("b"), OscType::Int(5), s("next_bar"), OscType::Int(1)]
            )),
            Ok(Request::SwitchSet {
                name: "b".into(),
                fade_ms: 5,
                on_bar: Some(OnBar::Next(1))
            })
        );
        for (kw, n) in [("bar", 0), ("next_bar", -1), ("beat", 2)] {
            let reason = fail_reason(msg(
                "/set/switch",
                vec![s("b"), OscType::Int(5), s(kw), OscType::Int(n)],
            ));
            assert!(reason.contains("bar"), "{kw} {n}: {reason}");
        }
        assert!(
            fail_reason(msg("/set/switch", vec![s("b"), OscType::Int(5), s("bar")]))
                .contains("'bar' N")
        );
        // A file name that makes no prepared set's name needs an explicit one.
        assert!(fail_reason(msg("/set/prepare", vec![s("my set.toml")])).contains("--as NAME"));
        assert!(
            fail_reason(msg("/set/prepare", vec![s("../x.toml"), s("x")]))
                .contains("not a set name")
        );
        assert!(
            fail_reason(msg("/set/prepare", vec![s("a.toml"), s("b.c")])).contains("cannot name")
        );
        for bad in [
            OscType::Int(-1),
            OscType::Int(10_001),
            OscType::Float(f32::NAN),
            s("x"),
        ] {
            let reason = fail_reason(msg("/set/switch", vec![s("b"), bad.clone()]));
            assert!(reason.contains("crossfade"), "{bad:?}: {reason}");
        }
        assert!(fail_reason(msg("/set/switch", vec![])).contains("prepared set name"));
        assert!(fail_reason(msg(
            "/set/load",
            vec![
                s("a.toml"),
                OscType::Int(1),
                OscType::Int(1),
                OscType::Int(1)
            ]
        ))
        .contains("atomic"));
    }

    #[test]
    fn new_checks_type_id_and_every_param() {
        let ok = msg(
            "/module/new",
            vec![
                s("vcf"),
                s("f1"),
                s("mode"),
                s("highpass"),
                s("cutoff"),
                OscType::Int(500),
            ],
        );
        assert_eq!(
            decode(&ok).unwrap(),
            Request::New {
                spec: catalog::module("vcf").unwrap(),
                id: "f1".into(),
                params: vec![(0, 2.0), (1, 500.0)],
                standby: Standby::Hot
            }
        );
        assert!(fail_reason(msg("/module/new", vec![s("vcx"), s("a")])).contains("types: vco"));
        assert!(fail_reason(msg("/module/new", vec![s("vco"), s("1a")]))
            .contains("start with a letter"));
        assert!(
            fail_reason(msg("/module/new", vec![s("vco"), s("a"), s("freq")])).contains("pairs")
        );
        assert!(fail_reason(msg(
            "/module/new",
            vec![s("vco"), s("a"), s("freq"), OscType::Float(f32::NAN)]
        ))
        .contains("finite"));
        assert!(fail_reason(msg(
            "/module/new",
            vec![s("vco"), s("a"), s("freq"), OscType::Float(1e6)]
        ))
        .contains("0.1..20000"));
        assert!(
            fail_reason(msg("/module/new", vec![OscType::Int(3), s("a")]))
                .contains("must be a string")
        );
    }

    #[test]
    fn standby_none_is_a_creation_option_not_a_param() {
        let m = msg(
            "/module/new",
            vec![s("vco"), s("a"), s("standby"), s("none")],
        );
        let Request::New {
            standby, params, ..
        } = decode(&m).unwrap()
        else {
            panic!()
        };
        assert_eq!((standby, params.len()), (Standby::None, 0));
        assert!(decode(&msg(
            "/module/new",
            vec![s("vco"), s("a"), s("standby"), s("cold")]
        ))
        .is_err());
    }

    #[test]
    fn controller_shortcut_addresses_are_sets() {
        let m = msg("/vco1/freq", vec![OscType::Double(330.0)]);
        assert_eq!(
            decode(&m).unwrap(),
            Request::Set {
                id: "vco1".into(),
                param: "freq".into(),
                value: Arg::Float(330.0)
            }
        );
        assert!(fail_reason(msg("/vco1/freq", vec![])).contains("one value"));
        assert!(fail_reason(msg("/nope", vec![])).contains("unknown address"));
        assert!(fail_reason(msg("/a/b/c", vec![OscType::Float(1.0)])).contains("unknown address"));
    }

    #[test]
    fn wrong_argument_types_and_counts_are_refused_with_the_usage() {
        assert!(fail_reason(msg("/module/set", vec![s("a"), s("b")])).contains("id, param, value"));
        assert!(fail_reason(msg(
            "/module/set",
            vec![s("a"), s("b"), OscType::Blob(vec![1])]
        ))
        .contains("blob"));
        assert!(fail_reason(msg("/sync", vec![s("x")])).contains("must be an int"));
        assert!(fail_reason(msg("/notify", vec![OscType::Int(2)])).contains("1 or 0"));
        assert!(fail_reason(msg("/status", vec![OscType::Int(2)])).contains("no arguments"));
        assert!(
            fail_reason(msg("/patch/connect", vec![s("vco1"), s("x:y")]))
                .contains("not a port name")
        );
    }

    #[test]
    fn map_requests_are_checked_and_bad_numbers_curves_and_counts_refused() {
        let i = OscType::Int;
        let f = OscType::Float;
        let m = msg(
            "/map/cc",
            vec![
                i(74),
                i(2),
                s("filt1"),
                s("cutoff"),
                f(100.0),
                f(8000.0),
                s("exp"),
            ],
        );
        assert_eq!(
            decode(&m).unwrap(),
            Request::MapCc {
                map: CcMap::new(
                    74,
                    Some(2),
                    "filt1",
                    "cutoff",
                    Some((100.0, 8000.0)),
                    Curve::Exp
                )
            }
        );
        let short = msg("/map/cc", vec![i(1), i(0), s("a"), s("gain")]);
        assert!(
            matches!(decode(&short).unwrap(), Request::MapCc { map } if map.range.is_none() && map.channel.is_none())
        );
        let curve_only = msg("/map/learn", vec![s("a"), s("freq"), s("exp")]);
        assert!(
            matches!(decode(&curve_only).unwrap(), Request::Learn { map } if map.curve == Curve::Exp)
        );
        assert!(
            fail_reason(msg("/map/cc", vec![i(128), i(0), s("a"), s("gain")])).contains("0..119")
        );
        assert!(
            fail_reason(msg("/map/cc", vec![i(7), i(17), s("a"), s("gain")])).contains("1..16")
        );
        assert!(fail_reason(msg(
            "/map/cc",
            vec![i(7), i(1), s("a"), s("gain"), s("log")]
        ))
        .contains("'lin' or 'exp'"));
        assert!(fail_reason(msg(
            "/map/cc",
            vec![i(7), i(1), s("a"), s("gain"), f(f32::NAN), f(1.0)]
        ))
        .contains("finite"));
        assert!(fail_reason(msg("/map/cc", vec![i(7), i(1), s("a")]))
            .contains("cc, channel, id, param"));
        assert!(fail_reason(msg("/map/unmap", vec![s("a")])).contains("id, param"));
        assert!(fail_reason(msg("/map/list", vec![i(1)])).contains("no arguments"));
    }

    #[test]
    fn fail_replies_carry_the_address_and_reason() {
        let f = Fail::new("/module/free", "no module 'x'");
        let m = f.to_message();
        assert_eq!(m.addr, "/fail");
        assert_eq!(m.args, vec![s("/module/free"), s("no module 'x'")]);
    }
}
