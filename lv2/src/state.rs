//! A plugin's own state (the LV2 state extension), as the Turtle text lilv writes.
//!
//! A plugin with the extension keeps state that no control port shows (a loaded
//! sample, an internal gain, a sequence): `set save` asks the playing instance for
//! it ([`StateSaver::save`]) and `set load` gives it to a new instance before its
//! first period ([`crate::host::Host::restore_state`]). The text is what
//! `lilv_state_to_string` writes: readable, diffable, and one file with the set
//! (it goes into the set file as a multi-line string). It holds the plugin's
//! properties only, no port values: the set's `params` are the control values.
//!
//! Threads: the state spec lets `save` run concurrently with `run` (its own
//! threading class: "it may be called concurrently with an Audio function"), so a
//! playing module is saved from its worker's control thread while its audio
//! thread plays on, never paused (a paused period would put its lockstep standby
//! out of step). `restore` is in the instantiation class: it runs before the
//! instance is handed to the audio thread.

use std::mem::ManuallyDrop;
use std::sync::Arc;

/// The largest state accepted from a set file or a plugin, bytes: far above what
/// plugins with POD state write (a few hundred bytes to a few KiB), and a quarter
/// of the largest set file modsynth reads (1 MiB), so that a saved set with a few
/// plugins stays loadable.
pub const MAX_STATE_BYTES: usize = 256 << 10;

/// The subject lilv gives the state in the text.
const STATE_URI: &str = "urn:modsynth:state";

/// The URI of the state extension's interface: a plugin that returns extension
/// data for it has state of its own.
const STATE_INTERFACE: &str = "http://lv2plug.in/ns/ext/state#interface";

/// The URID features lilv needs to save.
const URID_MAP: &str = "http://lv2plug.in/ns/ext/urid#map";
const URID_UNMAP: &str = "http://lv2plug.in/ns/ext/urid#unmap";

/// POD and portable: no file paths, no pointers (the flags livi uses).
fn flags() -> lv2_sys::LV2_State_Flags {
    lv2_sys::LV2_State_Flags(
        lv2_sys::LV2_State_Flags::LV2_STATE_IS_POD.0
            | lv2_sys::LV2_State_Flags::LV2_STATE_IS_PORTABLE.0,
    )
}

/// Whether a running `instance` has state of its own (answers the state interface).
pub(crate) fn has_state(instance: &livi::Instance) -> bool {
    // SAFETY: asking a plugin for extension data is what every host does after
    // instantiation; the instance is ours and not running yet (called from
    // `Host::new`, on the thread that made it).
    unsafe {
        instance
            .raw()
            .instance()
            .extension_data::<std::ffi::c_void>(STATE_INTERFACE)
    }
    .is_some()
}

/// Checks a state text before anything is made from it: its size, that lilv
/// reads it, and that it is a state of plugin `uri`. The error says what is wrong.
pub fn check(uri: &str, text: &str) -> Result<(), String> {
    parse(uri, text).map(|_| ())
}

/// The state `text` of plugin `uri`, read with `features`' URID map (the one the
/// instance it is restored into uses).
fn parse_with(
    features: &Arc<livi::Features>,
    uri: &str,
    text: &str,
) -> Result<livi::State, String> {
    if text.len() > MAX_STATE_BYTES {
        return Err(format!(
            "the plugin state is {} bytes; at most {MAX_STATE_BYTES} are accepted",
            text.len()
        ));
    }
    if text.contains('\0') {
        return Err("the plugin state contains a NUL character".into());
    }
    let world = crate::discover::world();
    let state = world.state_from_string(features, text).map_err(|_| {
        "the plugin state is not an LV2 state lilv can read (Turtle, as `set save` writes it)"
            .to_string()
    })?;
    let of = state.plugin_uri();
    if of != uri {
        return Err(format!("the plugin state is for {of}, not for {uri}"));
    }
    Ok(state)
}

fn parse(uri: &str, text: &str) -> Result<livi::State, String> {
    let features = crate::discover::world()
        .try_build_features(livi::FeaturesBuilder {
            min_block_length: 1,
            max_block_length: 4096,
        })
        .map_err(|e| format!("LV2 features: {e}"))?;
    parse_with(&features, uri, text)
}

/// Restores `text` into `instance` (plugin `uri`): off the audio thread, before the
/// instance plays.
pub(crate) fn restore(
    instance: &mut livi::Instance,
    features: &Arc<livi::Features>,
    uri: &str,
    text: &str,
) -> Result<(), String> {
    let state = parse_with(features, uri, text)?;
    instance
        .restore_state(&state)
        .map_err(|e| format!("cannot restore the state of {uri}: {e}"))
}

/// What saving a playing instance's state needs, held by the worker's control
/// thread while the audio thread runs the instance (see the module doc).
pub struct StateSaver {
    plugin: lilv::plugin::Plugin,
    /// A second handle on the instance's `LilvInstance` (a pointer to the
    /// plugin's descriptor and handle, neither of which changes after
    /// instantiation). Never dropped: the `Host` that made it owns the instance
    /// and frees it; this handle must not outlive it (see [`Host::state_saver`]).
    ///
    /// [`Host::state_saver`]: crate::host::Host::state_saver
    instance: ManuallyDrop<lilv::instance::Instance>,
    /// Keeps the URID map the instance uses alive and gives it to lilv.
    features: Arc<livi::Features>,
    uri: String,
}

impl std::fmt::Debug for StateSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSaver")
            .field("uri", &self.uri)
            .finish()
    }
}

impl StateSaver {
    /// A saver for `instance` of `plugin`.
    ///
    /// # Safety
    /// The saver must be dropped before `instance` is (it keeps a raw handle on
    /// it), and [`StateSaver::save`] must not run concurrently with the
    /// instance's instantiation-class functions (restore, activate, cleanup).
    pub(crate) unsafe fn new(
        plugin: &livi::Plugin,
        instance: &livi::Instance,
        features: Arc<livi::Features>,
        uri: &str,
    ) -> StateSaver {
        // SAFETY: `lilv::instance::Instance` is a pointer to lilv's instance
        // struct; the copy is never dropped (ManuallyDrop), so the instance is
        // freed once, by its owner, and the caller keeps the copy from outliving
        // it (this function's contract).
        let copy = unsafe { std::ptr::read(instance.raw().instance()) };
        StateSaver {
            plugin: plugin.raw().clone(),
            instance: ManuallyDrop::new(copy),
            features,
            uri: uri.to_string(),
        }
    }

    /// The instance's state as Turtle text (its properties, no port values).
    /// Allocates; runs the plugin's `save`, which the spec allows while the audio
    /// thread runs the plugin: call it from the control thread, never the audio one.
    pub fn save(&self) -> Result<String, String> {
        let dummy = lv2_raw::LV2Feature {
            uri: std::ptr::null(),
            data: std::ptr::null_mut(),
        };
        // The URID map and unmap features are all lilv needs to save POD state.
        let named = |uri: &str| {
            self.features.iter_features(&dummy).find(|f| {
                // SAFETY: every feature livi builds has a NUL-terminated static URI;
                // the dummy (null) is skipped.
                !f.uri.is_null()
                    && unsafe { std::ffi::CStr::from_ptr(f.uri) }.to_bytes() == uri.as_bytes()
            })
        };
        let (Some(map_feature), Some(unmap_feature)) = (named(URID_MAP), named(URID_UNMAP)) else {
            return Err("livi offers no URID map feature".into());
        };
        // SAFETY: the map feature's data points to the `LV2UridMap` inside livi's
        // pinned map, which `self.features` keeps alive; a bitwise copy of its two
        // fields (a handle and a function) is what livi hands out as well.
        let mut map = unsafe { std::ptr::read(map_feature.data as *const lv2_raw::LV2UridMap) };
        // SAFETY: the same, for the unmap feature's `LV2_URID_Unmap`.
        let mut unmap =
            unsafe { std::ptr::read(unmap_feature.data as *const lv2_sys::LV2_URID_Unmap) };
        let features = [map_feature, unmap_feature];
        let state = self
            .plugin
            .new_state_from_instance(
                &self.instance,
                &mut map,
                None,
                None,
                None,
                None,
                None,
                flags(),
                features.iter().copied(),
            )
            .ok_or_else(|| format!("lilv could not take the state of {}", self.uri))?;
        let text = state
            .to_string(&mut map, &mut unmap, STATE_URI, None)
            .ok_or_else(|| format!("lilv could not write the state of {}", self.uri))?;
        if text.len() > MAX_STATE_BYTES {
            return Err(format!(
                "the state of {} is {} bytes; at most {MAX_STATE_BYTES} are saved",
                self.uri,
                text.len()
            ));
        }
        Ok(text)
    }
}
