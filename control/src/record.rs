//! `modsynth record`: records JACK ports into a WAV file.
//!
//! A JACK client with one input per channel. Its process callback only copies samples
//! into an `rtrb` ring; a writer thread drains the ring into the WAV file, so a long
//! recording needs no memory beyond the ring, and a slow disk shows up as counted
//! dropped frames, never as an xrun.
//!
//! A channel's source is either an output port (recorded directly) or an input port
//! such as `system:playback_1`: then the recorder records whatever is connected to it,
//! and keeps following as connections come and go (checked every 50 ms).
//!
//! Module port names (`echo1:out`) are resolved by the caller's `resolve` (the CLI
//! asks `modsynthd`), not by JACK: PipeWire's JACK does not see the aliases workers
//! give their ports. They are resolved again every second, so a recording follows
//! a module to the worker that took it over (its standby was already connected to
//! the recorder as a mirror of the primary's connection, so nothing is lost).
//!
//! The file is written under a temporary name next to `path` and renamed when it is
//! complete: a recording that fails never leaves a broken WAV under `path`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a finished recording holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub frames: u64,
    pub channels: usize,
    pub sample_rate: u32,
    /// Frames lost because the writer fell behind (0 on a healthy machine).
    pub dropped_frames: u64,
    /// Largest absolute sample value recorded.
    pub peak: f32,
}

struct Callback {
    inputs: Vec<jack::Port<jack::AudioIn>>,
    ring: rtrb::Producer<f32>,
    dropped: Arc<AtomicU64>,
}

impl jack::ProcessHandler for Callback {
    fn process(&mut self, _: &jack::Client, scope: &jack::ProcessScope) -> jack::Control {
        let n = scope.n_frames() as usize;
        let channels = self.inputs.len();
        let Ok(mut chunk) = self.ring.write_chunk_uninit(n * channels) else {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return jack::Control::Continue;
        };
        let (a, b) = chunk.as_mut_slices();
        for (c, port) in self.inputs.iter().enumerate() {
            for (i, &s) in port.as_slice(scope).iter().enumerate() {
                let k = i * channels + c;
                let slot = if k < a.len() {
                    &mut a[k]
                } else {
                    &mut b[k - a.len()]
                };
                slot.write(s);
            }
        }
        // SAFETY: the loop above wrote every one of the n * channels slots (each
        // input slice has n frames and k covers 0..n*channels exactly once).
        unsafe { chunk.commit_all() };
        jack::Control::Continue
    }
}

/// One channel's source, as given on the command line.
fn resolve_sources(client: &jack::Client, name: &str) -> Result<Vec<String>, String> {
    let port = client
        .port_by_name(name)
        .ok_or_else(|| format!("no JACK port '{name}' (list them with `jack_lsp`)"))?;
    if port.flags().contains(jack::PortFlags::IS_INPUT) {
        Ok(port.get_connections())
    } else {
        Ok(vec![name.to_string()])
    }
}

/// Records `sources` (one channel each) into `path` for `duration` (or until `stop`
/// is set), calling `progress` about once a second with the seconds recorded.
///
/// `resolve` maps a module port name to the real JACK port playing it now (`None`:
/// not a module port, or no supervisor to ask: the name is used as it is).
pub fn record(
    path: &Path,
    sources: &[String],
    duration: Option<Duration>,
    stop: &AtomicBool,
    mut progress: impl FnMut(f64),
    mut resolve: impl FnMut(&str) -> Option<String>,
) -> Result<Summary, String> {
    if sources.is_empty() {
        return Err("name at least one JACK port to record".into());
    }
    let mut resolve_all = || -> Vec<String> {
        sources
            .iter()
            .map(|s| resolve(s).unwrap_or_else(|| s.clone()))
            .collect()
    };
    let mut real = resolve_all();
    let options = jack::ClientOptions::NO_START_SERVER;
    let (client, _) = jack::Client::new("modsynth-record", options).map_err(|e| {
        format!("cannot reach a JACK server ({e}); start one or set JACK_DEFAULT_SERVER")
    })?;
    // Check every source before anything is created on disk.
    for (given, s) in sources.iter().zip(&real) {
        resolve_sources(&client, s).map_err(|e| {
            if given == s {
                e
            } else {
                format!("{given} (played by {s}): {e}")
            }
        })?;
    }
    let rate = client.sample_rate();
    let channels = sources.len();
    let mut inputs = Vec::new();
    for c in 0..channels {
        let port = client
            .register_port(&format!("in_{}", c + 1), jack::AudioIn::default())
            .map_err(|e| format!("cannot register a recorder port: {e}"))?;
        inputs.push(port);
    }
    let own: Vec<String> = inputs
        .iter()
        .map(|p| p.name().unwrap_or_default())
        .collect();
    // Two seconds of room: far more than a period, so only a stalled disk drops frames.
    let (producer, mut consumer) = rtrb::RingBuffer::new(2 * rate as usize * channels);
    let dropped = Arc::new(AtomicU64::new(0));
    let callback = Callback {
        inputs,
        ring: producer,
        dropped: dropped.clone(),
    };
    let active = client
        .activate_async((), callback)
        .map_err(|e| e.to_string())?;

    let spec = hound::WavSpec {
        channels: channels as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let partial = partial_path(path);
    let mut writer = hound::WavWriter::create(&partial, spec)
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let wanted = duration.map(|d| (d.as_secs_f64() * rate as f64).round() as u64);
    let mut frames = 0u64;
    let mut peak = 0f32;
    let mut last_follow = Instant::now() - Duration::from_secs(1);
    let mut last_resolve = Instant::now();
    let mut made: Vec<Vec<String>> = vec![Vec::new(); channels];
    let mut last_progress = Instant::now();
    let mut failure = None;
    loop {
        if last_resolve.elapsed() >= Duration::from_secs(1) {
            real = resolve_all();
            last_resolve = Instant::now();
        }
        if last_follow.elapsed() >= Duration::from_millis(50) {
            follow(active.as_client(), &real, &own, &mut made);
            last_follow = Instant::now();
        }
        let available = consumer.slots() / channels;
        let take = match wanted {
            Some(w) => available.min((w - frames) as usize),
            None => available,
        };
        if take > 0 {
            let chunk = consumer
                .read_chunk(take * channels)
                .expect("slots were counted");
            let (a, b) = chunk.as_slices();
            for &s in a.iter().chain(b) {
                peak = peak.max(s.abs());
                if let Err(e) = writer.write_sample(s) {
                    failure = Some(format!("writing {} failed: {e}", path.display()));
                    break;
                }
            }
            chunk.commit_all();
            frames += take as u64;
        }
        if failure.is_some() || wanted.is_some_and(|w| frames >= w) || stop.load(Ordering::SeqCst) {
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(frames as f64 / rate as f64);
            last_progress = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = active.deactivate();
    let finished = writer
        .finalize()
        .map_err(|e| format!("finishing {} failed: {e}", partial.display()));
    let result = match (failure, finished) {
        (Some(e), _) | (None, Err(e)) => Err(e),
        (None, Ok(())) => std::fs::rename(&partial, path).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                path.display()
            )
        }),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok(Summary {
        frames,
        channels,
        sample_rate: rate,
        dropped_frames: dropped.load(Ordering::Relaxed),
        peak,
    })
}

/// `.<name>.part<pid>` next to `path`: where the recording is written until done.
fn partial_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "recording".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.part{}", std::process::id()))
}

/// Connects each recorder input to what its source currently carries, and undoes
/// connections it made itself that are no longer wanted. Others are left alone:
/// modsynthd mirrors the recorder's connection to a module onto the module's
/// standby, and that mirror is what keeps a recording whole across a failover.
fn follow(client: &jack::Client, sources: &[String], own: &[String], made: &mut [Vec<String>]) {
    for ((source, input), made) in sources.iter().zip(own).zip(made) {
        let Ok(wanted) = resolve_sources(client, source) else {
            continue;
        };
        let Some(port) = client.port_by_name(input) else {
            continue;
        };
        let have = port.get_connections();
        for w in wanted.iter().filter(|w| !have.contains(w)) {
            if client.connect_ports_by_name(w, input).is_ok() {
                made.push(w.clone());
            }
        }
        made.retain(|m| {
            if wanted.contains(m) {
                return true;
            }
            if have.contains(m) {
                let _ = client.disconnect_ports_by_name(m, input);
            }
            false
        });
    }
}
