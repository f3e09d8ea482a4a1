//! One load run: access-log lines written at a steady rate into an agent's
//! log (rotated, if asked), and the agent's CPU and memory sampled from
//! `/proc`. The soak, the outage measurement and the host budget are each a
//! [`LineWriter`] plus [`Probe`] samples, with their own faults, checks and
//! report around them; `scripts/load.sh` runs any of the three.
//!
//! The writer keeps its rate from the run's start, not tick by tick: a tick
//! that was late (the machine busy, a rotation's copy) is made up by the
//! next one, so "N lines/s for T s" is what was written, not an upper bound.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::loggen;

/// How the writer rotates its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// Never.
    None,
    /// Every `every`, by rename and create (logrotate's default).
    Rename {
        /// Time between rotations.
        every: Duration,
    },
    /// Every `every`, rename+create and copy+truncate in turn.
    Alternate {
        /// Time between rotations.
        every: Duration,
    },
}

/// Rotated files kept beside the live one; older ones are deleted.
const KEEP: u64 = 4;

/// Lines of the synthetic fleet ([`loggen::fleet_lines`], format
/// [`loggen::FORMAT`]) into one file at a steady rate.
pub struct LineWriter {
    log: PathBuf,
    file: File,
    tag: String,
    rate: u64,
    started: Instant,
    written: u64,
    per_line: bool,
    errors: bool,
    rotation: Rotation,
    rotations: u64,
    buf: String,
}

impl LineWriter {
    /// Append to `log` (created if missing) at `rate` lines/s from now;
    /// lines are numbered from 0 with `tag` in their path.
    pub fn new(log: &Path, tag: &str, rate: u64) -> Result<LineWriter> {
        Ok(LineWriter {
            log: log.to_path_buf(),
            file: open_append(log)?,
            tag: tag.to_string(),
            rate,
            started: Instant::now(),
            written: 0,
            per_line: false,
            errors: false,
            rotation: Rotation::None,
            rotations: 0,
            buf: String::new(),
        })
    }

    /// Write each line with its own `write(2)`, as Apache does (one
    /// file-system event per line), instead of one write per tick.
    pub fn per_line(mut self, yes: bool) -> Self {
        self.per_line = yes;
        self
    }

    /// Every 50th line answers 503.
    pub fn with_errors(mut self, yes: bool) -> Self {
        self.errors = yes;
        self
    }

    /// Rotate the file as `rotation` says.
    pub fn rotating(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Rotations done so far.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Time since the writer started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The live file and the rotated ones still kept (the older are deleted).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = vec![self.log.clone()];
        out.extend(
            (self.rotations.saturating_sub(KEEP - 1)..=self.rotations)
                .filter(|&i| i > 0)
                .map(|i| self.rotated(i)),
        );
        out
    }

    fn rotated(&self, i: u64) -> PathBuf {
        self.log.with_extension(format!("log.{i}"))
    }

    /// Rotate when one is due, then write every line due by now (the rate
    /// times the time since the start, less what was written).
    pub fn step(&mut self) -> Result<()> {
        let elapsed = self.started.elapsed();
        let every = match self.rotation {
            Rotation::None => None,
            Rotation::Rename { every } | Rotation::Alternate { every } => Some(every),
        };
        if let Some(every) = every {
            if elapsed.as_millis() / every.as_millis().max(1) > u128::from(self.rotations) {
                self.rotate()?;
            }
        }
        let due = (elapsed.as_secs_f64() * self.rate as f64) as u64;
        let count = due.saturating_sub(self.written);
        if count == 0 {
            return Ok(());
        }
        self.buf.clear();
        loggen::fleet_lines(
            &mut self.buf,
            &self.tag,
            self.written,
            count,
            loggen::now(),
            self.errors,
        );
        let what = || format!("writing to {}", self.log.display());
        if self.per_line {
            for line in self.buf.split_inclusive('\n') {
                self.file.write_all(line.as_bytes()).with_context(what)?;
            }
        } else {
            self.file
                .write_all(self.buf.as_bytes())
                .with_context(what)?;
        }
        self.written += count;
        Ok(())
    }

    /// Sleep until the next multiple of `tick` since the start.
    pub async fn wait_tick(&self, tick: Duration) {
        let elapsed = self.started.elapsed();
        let ticks = elapsed.as_nanos() / tick.as_nanos().max(1) + 1;
        let next = tick.saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX));
        tokio::time::sleep(next.saturating_sub(elapsed)).await;
    }

    fn rotate(&mut self) -> Result<()> {
        self.rotations += 1;
        let n = self.rotations;
        let copytruncate =
            matches!(self.rotation, Rotation::Alternate { .. }) && n.is_multiple_of(2);
        if n > KEEP {
            let _ = fs::remove_file(self.rotated(n - KEEP));
        }
        let (log, old) = (self.log.clone(), self.rotated(n));
        let ctx = || format!("rotating {} to {}", log.display(), old.display());
        if copytruncate {
            fs::copy(&log, &old).with_context(ctx)?;
            OpenOptions::new()
                .write(true)
                .open(&log)
                .and_then(|f| f.set_len(0))
                .with_context(ctx)?;
        } else {
            fs::rename(&log, &old).with_context(ctx)?;
            File::create(&log).with_context(ctx)?;
        }
        self.file = open_append(&log)?;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {} to append", path.display()))
}

/// A process's resources at one moment, from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// User CPU time, clock ticks (1/100 s).
    pub user_ticks: u64,
    /// System CPU time, clock ticks.
    pub system_ticks: u64,
}

impl Probe {
    /// Read `pid`'s RSS and CPU times now.
    pub fn of(pid: u32) -> Result<Probe> {
        let (user_ticks, system_ticks) = crate::cpu_times(pid)?;
        Ok(Probe {
            rss_kib: crate::rss_kib(pid)?,
            user_ticks,
            system_ticks,
        })
    }

    /// User plus system ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.user_ticks + self.system_ticks
    }

    /// CPU seconds used between `earlier` and this probe.
    pub fn cpu_secs_since(&self, earlier: &Probe) -> f64 {
        self.cpu_ticks().saturating_sub(earlier.cpu_ticks()) as f64 / 100.0
    }
}

/// The CPU seconds (user + system) `wc -l` spends on `files`, and the lines
/// it counted: the floor a reader of these files cannot go under.
pub fn wc_floor(files: &[PathBuf]) -> Result<(f64, u64)> {
    let existing: Vec<&PathBuf> = files.iter().filter(|f| f.is_file()).collect();
    let mut lines = 0u64;
    let before = children_cpu_secs();
    let counted = (|| -> Result<()> {
        let out = std::process::Command::new("wc")
            .arg("-l")
            .args(&existing)
            .output()
            .context("running wc -l")?;
        anyhow::ensure!(out.status.success(), "wc -l failed: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or("");
        lines = last
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("wc -l printed {last:?}"))?;
        Ok(())
    })();
    counted?;
    Ok((children_cpu_secs() - before, lines))
}

/// User + system seconds of this process's waited-for children
/// (`getrusage(RUSAGE_CHILDREN)`): how a child's CPU is read once it has
/// exited, when its `/proc` entry is gone.
#[allow(unsafe_code)] // getrusage: libc has no safe wrapper; see SAFETY below.
fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    if rc != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
