//! The real-logrotate matrix: Debian's `logrotate` rotates a log written the
//! way Apache writes it, in every combination an operator is likely to
//! configure, while the agent runs, while Kinesis is down, and while the
//! agent is stopped.
//!
//! Stanzas: `create` (Apache reopens after a few late lines to the renamed
//! file, as after `apachectl graceful`) or `copytruncate`; no compression,
//! `compress`, or `compress` + `delaycompress`; numbered names or `dateext`;
//! in place or `olddir`. Each with gzip (logrotate's default), plus a few
//! with `compresscmd` xz, zstd and bzip2. The glob is the exact file name
//! (`access.log`), so every rotated file is found only through the
//! rotation logic, never by discovery.
//!
//! States: *running*; *outage* (every Kinesis call answered 500 from before
//! the first rotation until after the last); *stopped* (`SIGTERM`, as
//! `systemctl stop`, before the first rotation; started again after the
//! last). Three rotations per case, 300 ms apart; `dateext` rotations run
//! under libfaketime on three successive days, as daily rotations would.
//!
//! The oracle reads the disk at the end with the system's own
//! decompressors (`gzip -dc`, `xz -dc`, …), not the agent's crates: every
//! line in every file left must be on the stream (lost: must be 0), and as
//! nobody crashed, once (duplicates: must be 0). Nothing may be on the
//! stream that was not written. The table printed is the one in
//! docs/RELIABILITY.md.
//!
//! Needs `logrotate`, `faketime`, `xz-utils`, `zstd` and `bzip2` (the CI
//! script installs them); fails, never skips, without them.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tailrace_tests::fault_proxy::{FaultProxy, Faults};
use tailrace_tests::loggen::{id_of, numbered_lines};
use tailrace_tests::{
    create_stream, id_counts, read_stream, run_checked, until_stream, AgentDir, ChildGuard, Moto,
};

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// What the agent is doing while logrotate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Outage,
    Stopped,
}

// `compresscmd`: gzip is logrotate's default.
use crate::common::codec::Codec as Compressor;

/// One logrotate stanza.
#[derive(Debug, Clone, Copy)]
struct Stanza {
    copytruncate: bool,
    /// 0: none, 1: `compress`, 2: `compress` + `delaycompress`.
    compress: u8,
    compressor: Compressor,
    dateext: bool,
    olddir: bool,
}

impl Stanza {
    fn describe(&self) -> String {
        let mut s = String::from(if self.copytruncate {
            "copytruncate"
        } else {
            "create"
        });
        match self.compress {
            1 => s.push_str(" + compress"),
            2 => s.push_str(" + delaycompress"),
            _ => {}
        }
        if self.compress > 0 && self.compressor != Compressor::Gzip {
            s.push_str(&format!(" ({})", self.compressor.tool()));
        }
        if self.dateext {
            s.push_str(" + dateext");
        }
        if self.olddir {
            s.push_str(" + olddir");
        }
        s
    }

    fn config(&self, logs: &Path) -> String {
        let mut body = String::new();
        body.push_str(if self.copytruncate {
            "    copytruncate\n"
        } else {
            "    create\n"
        });
        match self.compress {
            0 => body.push_str("    nocompress\n"),
            n => {
                body.push_str("    compress\n");
                if n == 2 {
                    body.push_str("    delaycompress\n");
                }
                if self.compressor != Compressor::Gzip {
                    let tool = self.compressor.tool();
                    body.push_str(&format!(
                        "    compresscmd /usr/bin/{tool}\n    uncompresscmd /usr/bin/{tool}\n    compressoptions -q\n    compressext .{}\n",
                        self.compressor.ext()
                    ));
                }
            }
        }
        if self.dateext {
            body.push_str("    dateext\n");
        }
        if self.olddir {
            body.push_str(&format!("    olddir {}\n", logs.join("old").display()));
        }
        format!(
            "{} {{\n    rotate 10\n    missingok\n{body}}}\n",
            logs.join("access.log").display()
        )
    }
}

/// The stanzas of the matrix, then the other compressors.
fn stanzas() -> Vec<Stanza> {
    let mut out = Vec::new();
    for copytruncate in [false, true] {
        for compress in 0..3 {
            for dateext in [false, true] {
                for olddir in [false, true] {
                    out.push(Stanza {
                        copytruncate,
                        compress,
                        compressor: Compressor::Gzip,
                        dateext,
                        olddir,
                    });
                }
            }
        }
    }
    for (copytruncate, compress, compressor, dateext, olddir) in [
        (false, 1, Compressor::Xz, false, false),
        (true, 2, Compressor::Xz, true, false),
        (false, 2, Compressor::Zstd, false, true),
        (true, 1, Compressor::Bzip2, true, true),
    ] {
        out.push(Stanza {
            copytruncate,
            compress,
            compressor,
            dateext,
            olddir,
        });
    }
    out
}

/// The result of one case.
struct Outcome {
    on_disk: usize,
    lost: usize,
    duplicates: usize,
}

/// Apache's side: one append-mode descriptor on the live file.
struct Writer {
    live: PathBuf,
    file: File,
    next: usize,
}

impl Writer {
    fn open(live: &Path) -> Result<Writer> {
        Ok(Writer {
            live: live.to_path_buf(),
            file: OpenOptions::new().create(true).append(true).open(live)?,
            next: 0,
        })
    }

    fn write(&mut self, n: usize) -> Result<()> {
        self.file
            .write_all(numbered_lines(self.next..self.next + n).as_bytes())?;
        self.next += n;
        Ok(())
    }

    fn reopen(&mut self) -> Result<()> {
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.live)?;
        Ok(())
    }
}

/// `logrotate -f`, under libfaketime on day `day` for `dateext` names.
fn logrotate(conf: &Path, state: &Path, dateext: bool, day: usize) -> Result<()> {
    let mut cmd = Command::new("logrotate");
    cmd.arg("-f").arg("-s").arg(state).arg(conf);
    if dateext {
        cmd.env("LD_PRELOAD", FAKETIME_LIB)
            .env("FAKETIME", format!("@2026-12-{:02} 03:00:00", day + 1))
            .env("DONT_FAKE_MONOTONIC", "1")
            // Real modification times on the files (gzip copies the input's
            // to its output): only the date in the names is faked.
            .env("NO_FAKE_STAT", "1");
    }
    run_checked(&mut cmd, "logrotate (apt-get install logrotate faketime)")?;
    Ok(())
}

/// The bytes of `path`, decompressed by the system's own tool.
fn read_with_tool(path: &Path) -> Result<Vec<u8>> {
    let Some(c) = Compressor::of(path) else {
        return fs::read(path).with_context(|| format!("reading {}", path.display()));
    };
    let out = run_checked(
        Command::new(c.tool()).arg("-dc").arg(path),
        &format!("{} -dc {}", c.tool(), path.display()),
    )?;
    Ok(out.stdout)
}

/// Ids of the complete lines in every file in `logs` and `logs/old`.
fn ids_on_disk(logs: &Path) -> Result<BTreeSet<usize>> {
    let mut ids = BTreeSet::new();
    for dir in [logs.to_path_buf(), logs.join("old")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if !path.is_file() {
                continue;
            }
            let data = read_with_tool(&path)?;
            let complete = match data.iter().rposition(|&b| b == b'\n') {
                Some(end) => &data[..=end],
                None => &data[..0],
            };
            ids.extend(complete.split(|&b| b == b'\n').filter_map(id_of));
        }
    }
    Ok(ids)
}

/// How often each id is on `stream`.
async fn shipped(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<HashMap<usize, usize>> {
    id_counts(&read_stream(kinesis, stream).await?, id_of)
}

/// Start the agent again; its log is `agent-<n>.log`.
fn start_agent(a: &AgentDir, n: &mut usize) -> Result<ChildGuard> {
    *n += 1;
    a.run(Path::new(env!("CARGO_BIN_EXE_tailrace")), &n.to_string())
}

async fn run_case(
    moto: &Moto,
    kinesis: &aws_sdk_kinesis::Client,
    stanza: &Stanza,
    state: State,
    name: &str,
) -> Result<Outcome> {
    create_stream(kinesis, name, 1).await?;
    let proxy = FaultProxy::start(&moto.endpoint(), Faults::none())?;
    let a = AgentDir::with_paths(
        name,
        "matrix",
        &proxy.endpoint(),
        "access.log",
        &format!("    format: combined\n    start_at: beginning\n    stream: {name}\n    mode: raw\n    linger: 200ms\n"),
    )?;
    let dir = a.dir.clone();
    let logs = a.logs();
    fs::create_dir_all(logs.join("old"))?;
    let conf = dir.join("logrotate.conf");
    fs::write(&conf, stanza.config(&logs))?;
    // logrotate ignores config files writable by group or others.
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644))?;
    let lr_state = dir.join("logrotate.state");
    let mut writer = Writer::open(&logs.join("access.log"))?;
    writer.write(30)?;
    let mut starts = 0;
    let mut agent = Some(start_agent(&a, &mut starts)?);
    until_stream(
        kinesis,
        name,
        Duration::from_secs(20),
        "the first lines shipped",
        |records| Ok((id_counts(&records, id_of)?.len() >= 30).then_some(())),
    )
    .await?;

    match state {
        State::Running => {}
        State::Outage => proxy.set_faults(Faults {
            p_5xx: 1.0,
            ..Faults::none()
        }),
        State::Stopped => {
            if let Some(mut agent) = agent.take() {
                agent.stop(Duration::from_secs(25))?;
            }
        }
    }
    for day in 0..3 {
        writer.write(25)?;
        logrotate(&conf, &lr_state, stanza.dateext, day)?;
        if !stanza.copytruncate {
            // Apache's old children finish their requests into the
            // renamed file, then the graceful restart reopens the path.
            writer.write(2)?;
            writer.reopen()?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    writer.write(10)?;
    match state {
        State::Running => {}
        State::Outage => proxy.set_faults(Faults::none()),
        State::Stopped => agent = Some(start_agent(&a, &mut starts)?),
    }

    let expected = ids_on_disk(&logs)?;
    let waited = until_stream(
        kinesis,
        name,
        Duration::from_secs(45),
        "every line on disk shipped",
        |records| {
            let got = id_counts(&records, id_of)?;
            Ok(expected.iter().all(|i| got.contains_key(i)).then_some(()))
        },
    )
    .await;
    if let Some(mut agent) = agent.take() {
        // A clean stop flushes whatever is still in flight: duplicates,
        // if any, are on the stream after it.
        agent.stop(Duration::from_secs(25))?;
    }
    let got = shipped(kinesis, name).await?;
    let written: BTreeSet<usize> = (0..writer.next).collect();
    let invented: Vec<&usize> = got.keys().filter(|i| !written.contains(i)).collect();
    ensure!(
        invented.is_empty(),
        "{name}: ids nobody wrote: {invented:?}"
    );
    let lost = expected.iter().filter(|i| !got.contains_key(i)).count();
    let duplicates = got.values().map(|&n| n - 1).sum();
    if lost > 0 {
        eprintln!(
            "{name}: {lost} lost ({}); logs in {}",
            waited.err().map(|e| e.to_string()).unwrap_or_default(),
            dir.display()
        );
    } else if duplicates == 0 {
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(Outcome {
        on_disk: expected.len(),
        lost,
        duplicates,
    })
}

fn require_tools() -> Result<()> {
    for tool in ["logrotate", "gzip", "xz", "zstd", "bzip2"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        ensure!(
            found,
            "`{tool}` is missing: apt-get install logrotate xz-utils zstd bzip2 faketime"
        );
    }
    ensure!(
        Path::new(FAKETIME_LIB).exists(),
        "{FAKETIME_LIB} is missing: apt-get install faketime"
    );
    Ok(())
}

async fn run_state(state: State) -> Result<()> {
    require_tools()?;
    let moto = Moto::start()?;
    let kinesis = moto.kinesis().await;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (i, stanza) in stanzas().iter().enumerate() {
        let name = format!("lrm-{}-{i}", format!("{state:?}").to_lowercase());
        let o = run_case(&moto, &kinesis, stanza, state, &name)
            .await
            .with_context(|| format!("{name}: {}", stanza.describe()))?;
        if o.lost > 0 || o.duplicates > 0 {
            failed.push(format!(
                "{} ({state:?}): {} lost, {} duplicates",
                stanza.describe(),
                o.lost,
                o.duplicates
            ));
        }
        rows.push(format!(
            "| {} | {state:?} | {} | {} | {} |",
            stanza.describe(),
            o.on_disk,
            o.lost,
            o.duplicates
        ));
    }
    eprintln!("| stanza | agent | lines on disk | lost | duplicates |\n|---|---|---:|---:|---:|");
    for r in &rows {
        eprintln!("{r}");
    }
    ensure!(
        failed.is_empty(),
        "cases that failed:\n{}",
        failed.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_while_the_agent_runs() -> Result<()> {
    run_state(State::Running).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_during_a_kinesis_outage() -> Result<()> {
    run_state(State::Outage).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_while_the_agent_is_stopped() -> Result<()> {
    run_state(State::Stopped).await
}
