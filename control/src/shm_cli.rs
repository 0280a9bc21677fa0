//! `modsynth shm ls` and `modsynth shm gc`: an instance's shared memory as its
//! registry and `/dev/shm` show it, and the removal of what dead instances left.

use modsynth_shm::{self as shm, Registry, ScanEntry, SegmentStatus};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// One segment in `modsynth shm ls`.
#[derive(Debug, Serialize)]
struct Row {
    segment: String,
    /// Bytes in /dev/shm (`None`: not there).
    size: Option<u64>,
    /// The registry id, if registered.
    allocation: Option<String>,
    /// Who the registry says owns it (`worker:<pid>`, `supervisor`).
    owner: Option<String>,
    /// `registered`, `unregistered`, `missing` or `dead_owner`.
    status: &'static str,
    leak: bool,
}

#[derive(Debug, Serialize)]
struct Totals {
    segments: usize,
    bytes: u64,
    leaks: usize,
    missing: usize,
    workers: usize,
}

/// `modsynth shm ls --json`.
#[derive(Debug, Serialize)]
struct Listing {
    instance: String,
    state_dir: String,
    /// The pid in the instance's lock file, and whether that process is alive.
    supervisor_pid: Option<u32>,
    running: bool,
    /// The registry file, if it was read.
    registry: Option<String>,
    /// Why there is no registry to read.
    error: Option<String>,
    segments: Vec<Row>,
    workers: Vec<shm::Worker>,
    totals: Totals,
}

/// `modsynth shm ls`: exit 0 if the instance's registry was read (leaks or not),
/// 1 if there is none (its segments, if any, are then listed as leaks).
pub fn ls(name: &str, state_dir: Option<PathBuf>, json: bool) -> Result<ExitCode, String> {
    check_name(name)?;
    let dir = state_dir.unwrap_or_else(|| shm::default_base_dir().join(name));
    let registry_path = dir.join(shm::REGISTRY_FILE);
    let (rows, workers, problem) = match Registry::load(&dir) {
        Ok(registry) => {
            let report = shm::scan(name, &registry).map_err(|e| e.to_string())?;
            let rows = report.entries.iter().map(|e| row(e, &registry)).collect();
            (rows, registry.workers().to_vec(), None)
        }
        Err(e) => {
            // No registry: whatever /dev/shm holds under the prefix is nobody's.
            let rows = list_shm(name)?
                .into_iter()
                .map(|(segment, size)| Row {
                    segment,
                    size: Some(size),
                    allocation: None,
                    owner: None,
                    status: "unregistered",
                    leak: true,
                })
                .collect();
            let problem = if registry_path.exists() {
                format!("instance '{name}': {e}")
            } else {
                format!(
                    "no instance '{name}' (no registry at {})",
                    registry_path.display()
                )
            };
            (rows, Vec::new(), Some(problem))
        }
    };
    let rows: Vec<Row> = rows;
    let totals = Totals {
        segments: rows.iter().filter(|r| r.size.is_some()).count(),
        bytes: rows.iter().filter_map(|r| r.size).sum(),
        leaks: rows.iter().filter(|r| r.leak).count(),
        missing: rows.iter().filter(|r| r.status == "missing").count(),
        workers: workers.len(),
    };
    if let Some(problem) = &problem {
        eprintln!("modsynth: {problem}");
    }
    let supervisor_pid: Option<u32> = std::fs::read_to_string(dir.join(shm::LOCK_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let running = supervisor_pid.is_some_and(shm::pid_alive);
    if json {
        let listing = Listing {
            instance: name.to_string(),
            state_dir: dir.display().to_string(),
            supervisor_pid,
            running,
            registry: problem
                .is_none()
                .then(|| registry_path.display().to_string()),
            error: problem.clone(),
            segments: rows,
            workers,
            totals,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&listing).map_err(|e| e.to_string())?
        );
    } else {
        if problem.is_none() {
            match (supervisor_pid, running) {
                (Some(pid), true) => println!("instance '{name}': modsynthd pid {pid}"),
                _ if dir.parent() == Some(shm::default_base_dir().as_path()) => println!(
                    "instance '{name}': its modsynthd is not running; starting it again or \
                     `modsynth shm gc` removes what it left"
                ),
                _ => println!(
                    "instance '{name}': its modsynthd is not running; starting it again \
                     removes what it left"
                ),
            }
        }
        if !rows.is_empty() {
            print!("{}", table(&rows));
        }
        println!(
            "{} segment(s), {} bytes; {} leak(s), {} missing; {} worker(s)",
            totals.segments, totals.bytes, totals.leaks, totals.missing, totals.workers
        );
        if totals.leaks > 0 {
            if problem.is_some() {
                let gc_sees_it = dir.join(shm::LOCK_FILE).exists()
                    && dir.parent() == Some(shm::default_base_dir().as_path());
                if gc_sees_it {
                    println!("'{name}' is not running: `modsynth shm gc` removes its leftovers");
                } else {
                    let files: Vec<String> = rows
                        .iter()
                        .map(|r| format!("/dev/shm{}", r.segment))
                        .collect();
                    println!(
                        "nothing proves these are modsynth's; if they are (no modsynthd named \
                         '{name}' runs), remove them: rm {}",
                        files.join(" ")
                    );
                }
            } else {
                println!(
                    "leaks are removed when '{name}' stops cleanly (SIGINT/SIGTERM), or by its \
                     next start"
                );
            }
        }
    }
    Ok(if problem.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `modsynth shm gc`: removes the segments of every instance (under the default base
/// of state dirs) whose modsynthd is gone; running ones are left alone.
pub fn gc() -> Result<ExitCode, String> {
    let base = shm::default_base_dir();
    let report = shm::gc(&base).map_err(|e| {
        format!(
            "{e} (gc looks at the state dirs under {}; XDG_RUNTIME_DIR sets where that is)",
            base.display()
        )
    })?;
    for name in &report.removed {
        println!("removed {name}");
    }
    for instance in &report.gone {
        println!("'{instance}': its modsynthd is gone; segments removed, registry emptied");
    }
    for (instance, pid) in &report.alive {
        let pid = pid.map_or(String::new(), |p| format!(" (pid {p})"));
        println!("'{instance}': running{pid}, left alone");
    }
    for (instance, why) in &report.skipped {
        println!("'{instance}': left alone ({why})");
    }
    for e in &report.errors {
        eprintln!("modsynth: {e}");
    }
    println!(
        "gc: removed {} segment(s) of {} stopped instance(s); {} running instance(s) left alone ({})",
        report.removed.len(),
        report.gone.len(),
        report.alive.len(),
        base.display()
    );
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check_name(name: &str) -> Result<(), String> {
    modsynth_model::names::check_instance_name(name).map_err(|e| format!("--name: {e}"))
}

fn row(e: &ScanEntry, registry: &Registry) -> Row {
    let owner = e.allocation.as_ref().and_then(|id| {
        registry
            .allocations()
            .iter()
            .find(|a| &a.id == id)
            .map(|a| a.owner.clone())
    });
    let status = match e.status {
        SegmentStatus::Registered => "registered",
        SegmentStatus::Unregistered => "unregistered",
        SegmentStatus::Missing => "missing",
        SegmentStatus::DeadOwner { .. } => "dead_owner",
    };
    Row {
        segment: e.name.clone(),
        size: e.size,
        allocation: e.allocation.clone(),
        owner,
        status,
        leak: e.status.is_leak(),
    }
}

/// The plain table: segment, size, owner, status.
fn table(rows: &[Row]) -> String {
    use std::fmt::Write;
    let width = rows
        .iter()
        .map(|r| r.segment.len())
        .chain(["segment".len()])
        .max()
        .unwrap_or(7);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>9}  {:<14}  status",
        "segment", "size", "owner"
    );
    for r in rows {
        let status = match r.status {
            "unregistered" => "UNREGISTERED (leak)",
            "dead_owner" => "dead owner (leak)",
            other => other,
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>9}  {:<14}  {status}",
            r.segment,
            r.size.map_or("-".to_string(), |s| s.to_string()),
            r.owner.as_deref().unwrap_or("-"),
        );
    }
    out
}

/// `(name, size)` of the `/dev/shm` entries of `instance`, sorted.
fn list_shm(instance: &str) -> Result<Vec<(String, u64)>, String> {
    let prefix = format!("{instance}-");
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| format!("cannot list /dev/shm: {e}"))?;
    let mut found: Vec<(String, u64)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let meta = e.metadata().ok()?;
            (name.starts_with(&prefix) && meta.is_file()).then(|| (format!("/{name}"), meta.len()))
        })
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_leaks_in_capitals() {
        let rows = [
            Row {
                segment: "/i-vco1-state".into(),
                size: Some(4096),
                allocation: Some("vco1.state".into()),
                owner: Some("worker:7".into()),
                status: "registered",
                leak: false,
            },
            Row {
                segment: "/i-old-state".into(),
                size: Some(64),
                allocation: None,
                owner: None,
                status: "unregistered",
                leak: true,
            },
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains("worker:7") && lines[1].ends_with("registered"));
        assert!(lines[2].ends_with("UNREGISTERED (leak)"), "{text}");
    }
}
