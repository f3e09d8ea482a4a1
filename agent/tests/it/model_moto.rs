//! Model-based test of the tailer, in the spirit of Vector's file-source
//! harness: seeded random sequences of file, process and network operations
//! run against the real `tailrace` binary (raw mode, moto_server behind the
//! fault proxy, all on 127.0.0.1).
//!
//! Each seed draws a logrotate configuration (`create` or `copytruncate`;
//! no compression, `compress` or `delaycompress` with gzip, xz, zstd or
//! bzip2 as `compresscmd`; numbered or `dateext`
//! names; `olddir` or not), an exact or a wide glob and `start_at`, then a
//! sequence of operations: append whole lines, append a partial line, rotate
//! (Apache writing a few late lines to a renamed file before it reopens),
//! rotate with a slow copy, delete the oldest rotation, delete the live file
//! while open, `kill -9` and restart the agent, Kinesis refusing, stalling,
//! refusing single records, then returning, and time passing.
//!
//! The oracle, at the end: every complete line that exists on disk (plain
//! or compressed, in the log directory or the `olddir`) was shipped at least once
//! (minus the lines present before a `start_at: end` first start);
//! duplicates only when the agent was killed. A failing seed prints its
//! configuration and operation list, which can be replayed with
//! `TAILRACE_MODEL_SEEDS=<seed>` (or kept as a regression seed below).
//!
//! CI runs [`CI_SEEDS`]; `scripts/model.sh N` runs N more.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flate2::read::MultiGzDecoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tailrace_tests::fault_proxy::{FaultProxy, Faults};
use tailrace_tests::loggen::{id_of, numbered_line as line, numbered_lines};
use tailrace_tests::{create_stream, id_counts, read_stream, AgentDir, ChildGuard, Moto};

/// Seeds CI runs: regression seeds first, then a few more.
/// - 4: an empty `access.log` created while the agent was down, renamed by
///   logrotate as the agent started, two late lines in `access.log.1`:
///   a file nothing named (`decision::rotated_unseen`); also an empty
///   file's place is held and it is followed by inode while undecided.
/// - 2: copytruncate + delaycompress + dateext, exact glob, two `kill -9`,
///   Kinesis refusing: lost 129 lines of a dated copy before the same rule.
/// - 1005: `create` + delaycompress, exact glob, Kinesis refusing: two
///   generations created and rotated away while the reader was blocked
///   (no discovery saw them at their path): lost 44 + 3 lines before the
///   rule also ran while the agent runs, whenever a rotation is noticed.
/// - 1008: copytruncate + delaycompress + dateext, bzip2, wide glob, a
///   kill: a checkpoint at offset 0 (nothing acknowledged) was not looked
///   for as displaced, and a wide glob's compressed rotations (excluded by
///   name) were not leftovers: lost 55 + 74 lines.
/// - 1000: copytruncate right after a read left the reading's fingerprint
///   empty (taken of the file again, not of the bytes read), so its copy
///   was unknown: 36 duplicates without a crash.
/// - 1016: copytruncate of a generation of which nothing was read yet,
///   between two looks (the live file's size never passed the offset): the
///   copy's 55 lines were lost; a changed modification time now counts as
///   a rotation noticed.
/// - 1021: a compressed rotation given the inode of a deleted checkpointed
///   (empty) file was read as plain text: compressed bytes on the stream.
const CI_SEEDS: &[u64] = &[1, 2, 3, 4, 1000, 1005, 1008, 1016, 1021];

/// How rotated files are made, as in a logrotate stanza.
#[derive(Debug, Clone, Copy)]
struct Scheme {
    copytruncate: bool,
    /// 0: none, 1: `compress`, 2: `compress` + `delaycompress`.
    compress: u8,
    /// `compresscmd` (and its `compressext`): drawn after the operations,
    /// so a seed's stanza and operations stay what they were before
    /// compressors other than gzip were drawn.
    codec: Codec,
    dateext: bool,
    olddir: bool,
    /// `access.log` instead of `access.log*`.
    exact_glob: bool,
    start_at_end: bool,
}

// logrotate's `compresscmd`: gzip (the default), xz, zstd or bzip2.
use crate::support::codec::Codec;

impl Codec {
    fn draw(rng: &mut StdRng) -> Codec {
        match rng.random_range(0..4) {
            0 => Codec::Gzip,
            1 => Codec::Xz,
            2 => Codec::Zstd,
            _ => Codec::Bzip2,
        }
    }

    fn compress(self, data: &[u8], out: File) -> Result<()> {
        match self {
            Codec::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                enc.write_all(data)?;
                enc.finish()?.sync_all()?;
            }
            Codec::Xz => {
                let mut enc = liblzma::write::XzEncoder::new(out, 1);
                enc.write_all(data)?;
                enc.finish()?.sync_all()?;
            }
            Codec::Zstd => {
                let mut out = out;
                ruzstd::encoding::compress(
                    data,
                    &mut out,
                    ruzstd::encoding::CompressionLevel::Fastest,
                );
                out.sync_all()?;
            }
            Codec::Bzip2 => {
                let mut enc = bzip2::write::BzEncoder::new(out, bzip2::Compression::fast());
                enc.write_all(data)?;
                enc.finish()?.sync_all()?;
            }
        }
        Ok(())
    }

    fn decompress(self, path: &Path) -> Result<Vec<u8>> {
        let file = File::open(path)?;
        let mut data = Vec::new();
        match self {
            Codec::Gzip => {
                MultiGzDecoder::new(file).read_to_end(&mut data)?;
            }
            Codec::Xz => {
                liblzma::read::XzDecoder::new_multi_decoder(file).read_to_end(&mut data)?;
            }
            Codec::Zstd => {
                ruzstd::decoding::StreamingDecoder::new(file)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .read_to_end(&mut data)?;
            }
            Codec::Bzip2 => {
                bzip2::read::MultiBzDecoder::new(file).read_to_end(&mut data)?;
            }
        }
        Ok(data)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Partial,
    Rotate { late: usize },
    SlowRotate,
    DeleteOldest,
    DeleteLive,
    Kill,
    Start,
    Refuse,
    Stall,
    RefuseRecords,
    Heal,
    Sleep(u64),
}

fn draw_scheme(rng: &mut StdRng) -> Scheme {
    Scheme {
        copytruncate: rng.random_bool(0.5),
        compress: rng.random_range(0..3),
        codec: Codec::Gzip,
        dateext: rng.random_bool(0.4),
        olddir: rng.random_bool(0.3),
        exact_glob: rng.random_bool(0.5),
        start_at_end: rng.random_bool(0.3),
    }
}

fn draw_ops(rng: &mut StdRng, n: usize) -> Vec<Op> {
    let mut ops = Vec::with_capacity(n);
    let mut running = true;
    for _ in 0..n {
        let op = match rng.random_range(0..100) {
            0..=29 => Op::Append(rng.random_range(1..80)),
            30..=36 => Op::Partial,
            37..=48 => Op::Rotate {
                late: rng.random_range(0..4),
            },
            49..=51 => Op::SlowRotate,
            52..=55 => Op::DeleteOldest,
            56..=57 => Op::DeleteLive,
            58..=64 => {
                running = !running;
                if running {
                    Op::Start
                } else {
                    Op::Kill
                }
            }
            65..=69 => Op::Refuse,
            70..=72 => Op::Stall,
            73..=75 => Op::RefuseRecords,
            76..=83 => Op::Heal,
            _ => Op::Sleep(rng.random_range(100..2500)),
        };
        ops.push(op);
    }
    ops
}

/// The world the operations act on: the log directory, Apache's descriptor,
/// the agent process, the proxy.
struct World<'a> {
    name: String,
    dir: PathBuf,
    logs: PathBuf,
    live: PathBuf,
    scheme: Scheme,
    next: usize,
    writer: File,
    /// A line written only up to this byte.
    partial: Option<(usize, usize)>,
    /// Rotated files, oldest first.
    rotated: Vec<PathBuf>,
    rotations: usize,
    agent: Option<ChildGuard>,
    starts: usize,
    killed: bool,
    proxy: &'a FaultProxy,
    config: PathBuf,
    /// Lines present before a `start_at: end` first start.
    before_start: usize,
    seed: u64,
}

impl World<'_> {
    fn append(&mut self, n: usize) -> Result<()> {
        self.finish_partial()?;
        self.writer
            .write_all(numbered_lines(self.next..self.next + n).as_bytes())?;
        self.next += n;
        Ok(())
    }

    fn partial(&mut self) -> Result<()> {
        self.finish_partial()?;
        let l = line(self.next);
        let cut = l.find("/item/").context("line shape")? + 13;
        self.writer.write_all(&l.as_bytes()[..cut])?;
        self.partial = Some((self.next, cut));
        self.next += 1;
        Ok(())
    }

    fn finish_partial(&mut self) -> Result<()> {
        if let Some((i, cut)) = self.partial.take() {
            self.writer.write_all(&line(i).as_bytes()[cut..])?;
        }
        Ok(())
    }

    fn reopen(&mut self) -> Result<()> {
        self.writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.live)?;
        Ok(())
    }

    fn rotated_dir(&self) -> PathBuf {
        if self.scheme.olddir {
            self.logs.join("old")
        } else {
            self.logs.clone()
        }
    }

    /// The name the next rotation gets; numbered names shift the older ones.
    fn next_rotated_name(&mut self) -> Result<PathBuf> {
        self.rotations += 1;
        let dir = self.rotated_dir();
        fs::create_dir_all(&dir)?;
        if self.scheme.dateext {
            return Ok(dir.join(format!("access.log-202612{:04}", self.rotations)));
        }
        // Shift access.log.N[.gz] to N+1, newest last in `rotated`: the
        // oldest (highest N) first, so no rename lands on a file not yet
        // moved (`rename` replaces its target).
        let mut shifted = Vec::new();
        let count = self.rotated.len();
        for (k, old) in self.rotated.iter().enumerate() {
            let n = count - k + 1;
            let ext = match Codec::of(old) {
                Some(c) => format!(".{}", c.ext()),
                None => String::new(),
            };
            let new = dir.join(format!("access.log.{n}{ext}"));
            fs::rename(old, &new)?;
            shifted.push(new);
        }
        self.rotated = shifted;
        Ok(dir.join("access.log.1"))
    }

    /// `compresscmd` with `compressext`, then the plain file is removed.
    fn compress(&self, path: &Path) -> Result<PathBuf> {
        let codec = self.scheme.codec;
        let mut name = path.as_os_str().to_owned();
        name.push(".");
        name.push(codec.ext());
        let out = PathBuf::from(name);
        let data = fs::read(path)?;
        codec.compress(&data, File::create(&out)?)?;
        fs::remove_file(path)?;
        Ok(out)
    }

    fn rotate(&mut self, late: usize, slow: bool) -> Result<()> {
        let target = self.next_rotated_name()?;
        if self.scheme.copytruncate {
            self.finish_partial()?;
            if slow {
                // A copy written in chunks over a few seconds (a big log).
                let data = fs::read(&self.live)?;
                let mut out = File::create(&target)?;
                let chunks = 4;
                let step = data.len().div_ceil(chunks).max(1);
                for part in data.chunks(step) {
                    out.write_all(part)?;
                    std::thread::sleep(Duration::from_millis(1800));
                }
            } else {
                fs::copy(&self.live, &target)?;
            }
            OpenOptions::new()
                .write(true)
                .open(&self.live)?
                .set_len(0)?;
        } else {
            fs::rename(&self.live, &target)?;
            File::create(&self.live)?;
            // Apache's children write to the renamed file until signalled.
            self.finish_partial()?;
            self.append(late)?;
            if slow {
                std::thread::sleep(Duration::from_millis(6000));
                self.append(1)?;
            }
            self.reopen()?;
        }
        let mut target = target;
        match self.scheme.compress {
            1 => target = self.compress(&target)?,
            2 => {
                if let Some(prev) = self.rotated.last().cloned() {
                    if Codec::of(&prev).is_none() {
                        let gz = self.compress(&prev)?;
                        if let Some(last) = self.rotated.last_mut() {
                            *last = gz;
                        }
                    }
                }
            }
            _ => {}
        }
        self.rotated.push(target);
        // `rotate 4`
        while self.rotated.len() > 4 {
            let oldest = self.rotated.remove(0);
            fs::remove_file(&oldest)?;
        }
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        if self.agent.is_none() {
            self.starts += 1;
            let log = self.dir.join(format!("agent-{}.log", self.starts));
            self.agent = Some(tailrace_tests::run_agent(
                Path::new(env!("CARGO_BIN_EXE_tailrace")),
                &self.config,
                &log,
            )?);
        }
        Ok(())
    }

    fn kill(&mut self) -> Result<()> {
        if let Some(mut agent) = self.agent.take() {
            agent.signal("KILL")?;
            agent.wait_timeout(Duration::from_secs(5))?;
            self.killed = true;
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<()> {
        match *op {
            Op::Append(n) => self.append(n)?,
            Op::Partial => self.partial()?,
            Op::Rotate { late } => self.rotate(late, false)?,
            Op::SlowRotate => self.rotate(2, true)?,
            Op::DeleteOldest => {
                if !self.rotated.is_empty() {
                    let oldest = self.rotated.remove(0);
                    fs::remove_file(&oldest)?;
                }
            }
            Op::DeleteLive => {
                self.finish_partial()?;
                fs::remove_file(&self.live)?;
                // Two lines to the deleted file, then a new one.
                self.append(2)?;
                self.reopen()?;
            }
            Op::Kill => self.kill()?,
            Op::Start => self.start()?,
            Op::Refuse => self.proxy.set_faults(Faults {
                p_5xx: 1.0,
                ..Faults::none()
            }),
            Op::Stall => self.proxy.set_faults(Faults {
                p_stall: 1.0,
                stall_for: Duration::from_secs(2),
                ..Faults::none()
            }),
            Op::RefuseRecords => self.proxy.set_faults(Faults {
                p_record: 0.5,
                seed: self.seed,
                ..Faults::none()
            }),
            Op::Heal => self.proxy.set_faults(Faults::none()),
            Op::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
        }
        Ok(())
    }

    /// Ids of the complete lines on disk now, with the file each is in.
    fn on_disk(&self) -> Result<BTreeMap<usize, PathBuf>> {
        let mut out = BTreeMap::new();
        let mut files = Vec::new();
        for dir in [self.logs.clone(), self.logs.join("old")] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                if e.file_type()?.is_file() {
                    files.push(e.path());
                }
            }
        }
        for path in files {
            let data = match Codec::of(&path) {
                Some(codec) => codec.decompress(&path)?,
                None => fs::read(&path)?,
            };
            let complete = match memchr_last_nl(&data) {
                Some(end) => &data[..=end],
                None => &data[..0],
            };
            for l in complete.split(|&b| b == b'\n') {
                if let Some(i) = id_of(l) {
                    if i >= self.before_start {
                        out.insert(i, path.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}

fn memchr_last_nl(data: &[u8]) -> Option<usize> {
    data.iter().rposition(|&b| b == b'\n')
}

/// How often each id is on `stream`.
async fn shipped(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<HashMap<usize, usize>> {
    id_counts(&read_stream(kinesis, stream).await?, id_of)
}

/// Each record on the stream as (first line's id, lines), in stream order:
/// a failing seed shows what was shipped around the lines it misses.
async fn stream_layout(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<(Option<usize>, usize)>> {
    Ok(read_stream(kinesis, stream)
        .await?
        .iter()
        .map(|r| {
            let mut lines = tailrace_wire::raw::lines(&r.data);
            let first = lines.next().and_then(id_of);
            (first, 1 + lines.count())
        })
        .collect())
}

async fn run_seed(
    moto: &Moto,
    kinesis: &aws_sdk_kinesis::Client,
    seed: u64,
    n_ops: usize,
) -> Result<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut scheme = draw_scheme(&mut rng);
    let ops = draw_ops(&mut rng, n_ops);
    scheme.codec = Codec::draw(&mut rng);
    let plan = format!("seed {seed}: {scheme:?}\nops: {ops:?}");
    let name = format!("model-{seed}");
    create_stream(kinesis, &name, 1).await?;
    let proxy = FaultProxy::start(&moto.endpoint(), Faults::none())?;
    let a = AgentDir::with_paths(
        &format!("model-{seed}"),
        "model",
        &proxy.endpoint(),
        if scheme.exact_glob { "access.log" } else { "access.log*" },
        &format!(
            "    format: combined\n    start_at: {start_at}\n    stream: {name}\n    mode: raw\n    linger: 200ms\n",
            start_at = if scheme.start_at_end { "end" } else { "beginning" },
        ),
    )?;
    let dir = a.dir.clone();
    let logs = a.logs();
    let live = a.log.clone();
    let config = a.config.clone();
    let writer = OpenOptions::new().create(true).append(true).open(&live)?;
    let mut world = World {
        name: name.clone(),
        dir: dir.clone(),
        logs,
        live,
        scheme,
        next: 0,
        writer,
        partial: None,
        rotated: Vec::new(),
        rotations: 0,
        agent: None,
        starts: 0,
        killed: false,
        proxy: &proxy,
        config,
        before_start: 0,
        seed,
    };
    // Some lines before the first start.
    world.append(20)?;
    if scheme.start_at_end {
        world.before_start = world.next;
    }
    world.start()?;
    // Let the first scan happen before anything else (`start_at: end`
    // skips what is there when it looks).
    let state = dir.join("state/checkpoints.json");
    for _ in 0..100 {
        if state.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));

    for op in &ops {
        world
            .apply(op)
            .with_context(|| format!("{plan}\nat {op:?}"))?;
    }
    // The end: the network returns, the agent runs, partial lines complete.
    proxy.set_faults(Faults::none());
    world.finish_partial()?;
    world.start()?;
    let expected = world.on_disk()?;
    let waited = tailrace_tests::eventually(
        Duration::from_secs(90),
        "every line on disk shipped",
        || {
            let kinesis = kinesis.clone();
            let name = name.clone();
            let expected = &expected;
            async move {
                let got = shipped(&kinesis, &name).await?;
                Ok(expected.keys().all(|i| got.contains_key(i)).then_some(got))
            }
        },
    )
    .await;
    let got = match waited {
        Ok(got) => got,
        Err(e) => {
            let got = shipped(kinesis, &name).await.unwrap_or_default();
            let mut missing: BTreeMap<&Path, Vec<usize>> = BTreeMap::new();
            for (i, path) in &expected {
                if !got.contains_key(i) {
                    missing.entry(path).or_default().push(*i);
                }
            }
            let summary: Vec<String> = missing
                .iter()
                .map(|(p, ids)| format!("{}: {} lines from {}", p.display(), ids.len(), ids[0]))
                .collect();
            let records = stream_layout(kinesis, &name).await.unwrap_or_default();
            bail!(
                "{e}\n{plan}\nmissing (file: count from first id): {summary:#?}\nrecords on the stream (first id, lines): {records:?}\nagent logs in {}",
                dir.display()
            );
        }
    };
    if let Some(agent) = world.agent.as_mut() {
        agent.signal("TERM")?;
        agent.wait_timeout(Duration::from_secs(25))?;
    }
    let duplicates: usize = got.values().map(|&n| n - 1).sum();
    if duplicates > 0 && !world.killed {
        bail!(
            "{duplicates} duplicates without a crash\n{plan}\nagent logs in {}",
            dir.display()
        );
    }
    let report = format!(
        "seed {seed}: {} lines on disk, all shipped; {duplicates} duplicates (killed: {}); {}",
        expected.len(),
        world.killed,
        world.name
    );
    drop(world);
    let _ = fs::remove_dir_all(&dir);
    Ok(report)
}

fn seeds(default: &[u64]) -> Result<Vec<u64>> {
    match std::env::var("TAILRACE_MODEL_SEEDS") {
        Ok(spec) => {
            let mut out = Vec::new();
            for part in spec.split(',') {
                if let Some((a, b)) = part.split_once('-') {
                    let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
                    out.extend(a..=b);
                } else {
                    out.push(part.trim().parse()?);
                }
            }
            Ok(out)
        }
        Err(_) => Ok(default.to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operation_sequences_lose_nothing() -> Result<()> {
    run_seeds(CI_SEEDS).await
}

async fn run_seeds(default: &[u64]) -> Result<()> {
    let n_ops = tailrace_tests::env_or("TAILRACE_MODEL_OPS", 24)? as usize;
    let moto = Moto::start()?;
    let kinesis = moto.kinesis().await;
    let mut failures = Vec::new();
    for seed in seeds(default)? {
        // Blocking file operations and sleeps: off the runtime's workers.
        match run_seed(&moto, &kinesis, seed, n_ops).await {
            Ok(report) => eprintln!("{report}"),
            Err(e) => {
                eprintln!("FAILED {e:#}");
                failures.push(seed);
            }
        }
    }
    if !failures.is_empty() {
        bail!("seeds failed: {failures:?} (re-run one with TAILRACE_MODEL_SEEDS=<seed>)");
    }
    Ok(())
}
