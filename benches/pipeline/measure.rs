//! A whole process measured: wall time and peak resident memory.
//!
//! The peak is the process's own high-water mark (`VmHWM` in
//! `/proc/<pid>/status`), read every few milliseconds until it exits. (The
//! `ru_maxrss` that `wait4` reports is no good here: Linux carries the
//! parent's resident size at fork into the child's figure.)

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub struct Measurement {
    pub wall: f64,
    pub peak_rss_mb: f64,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its end. Its stdout and stderr are collected on threads
/// so that a chatty process never blocks on a full pipe.
pub fn measure(command: &mut Command) -> Result<Measurement, String> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {command:?}: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let status = format!("/proc/{pid}/status");
        std::thread::spawn(move || {
            let mut peak_kb = 0u64;
            while !done.load(Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&status)
                    .ok()
                    .as_deref()
                    .and_then(high_water_kb)
                {
                    peak_kb = peak_kb.max(kb);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            peak_kb
        })
    };
    let status = child.wait();
    let wall = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let peak_kb = watcher.join().unwrap_or(0);
    let success = status
        .map_err(|e| format!("waiting for {command:?}: {e}"))?
        .success();
    Ok(Measurement {
        wall,
        peak_rss_mb: peak_kb as f64 * 1024.0 / 1e6,
        success,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// `VmHWM:   123456 kB` -> 123456.
fn high_water_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
