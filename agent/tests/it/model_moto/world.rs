//! The world the operations act on ([`World`]): the log directory, Apache's
//! descriptor, the agent process and its config, the fault proxy; each
//! operation carried out on it.

use super::*;

/// The flow as the config file says now.
#[derive(Debug, Clone)]
pub(super) struct FlowConfig {
    pub(super) name: String,
    pub(super) wide: bool,
    pub(super) spelled_out: bool,
    pub(super) present: bool,
    pub(super) start_at_end: bool,
}

/// The world the operations act on: the log directory, Apache's descriptor,
/// the agent process, the proxy.
pub(super) struct World<'a> {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) logs: PathBuf,
    /// The path the glob names (`logs/access.log`).
    pub(super) live: PathBuf,
    /// The file Apache writes: `live`, or in a world of links today's file.
    pub(super) real: PathBuf,
    pub(super) links: Links,
    /// Days in a world of links.
    pub(super) day: usize,
    pub(super) flow: FlowConfig,
    pub(super) renames: usize,
    /// Kinesis refusing or stalling now.
    pub(super) outage: bool,
    /// What made lines legitimately read twice without a crash.
    pub(super) repeats_allowed: Vec<&'static str>,
    pub(super) scheme: Scheme,
    pub(super) next: usize,
    pub(super) writer: File,
    /// A line written only up to this byte.
    pub(super) partial: Option<(usize, usize)>,
    /// Rotated files, oldest first.
    pub(super) rotated: Vec<PathBuf>,
    pub(super) rotations: usize,
    pub(super) agent: Option<ChildGuard>,
    pub(super) starts: usize,
    pub(super) killed: bool,
    pub(super) proxy: &'a FaultProxy,
    pub(super) config: PathBuf,
    /// Lines present before a `start_at: end` first start.
    pub(super) before_start: usize,
    pub(super) seed: u64,
}

impl World<'_> {
    pub(super) fn append(&mut self, n: usize) -> Result<()> {
        self.finish_partial()?;
        self.writer
            .write_all(numbered_lines(self.next..self.next + n).as_bytes())?;
        self.next += n;
        Ok(())
    }

    pub(super) fn partial(&mut self) -> Result<()> {
        self.finish_partial()?;
        let l = line(self.next);
        let cut = l.find("/item/").context("line shape")? + 13;
        self.writer.write_all(&l.as_bytes()[..cut])?;
        self.partial = Some((self.next, cut));
        self.next += 1;
        Ok(())
    }

    pub(super) fn finish_partial(&mut self) -> Result<()> {
        if let Some((i, cut)) = self.partial.take() {
            self.writer.write_all(&line(i).as_bytes()[cut..])?;
        }
        Ok(())
    }

    pub(super) fn reopen(&mut self) -> Result<()> {
        self.writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.real)?;
        Ok(())
    }

    /// Today's file in a world of links.
    pub(super) fn dated(&self, day: usize) -> PathBuf {
        match self.links {
            Links::Dated => self.logs.join(format!("2026/12/{:02}/access.log", day + 1)),
            _ => self.logs.join(format!("access.log.202612{:02}", day + 1)),
        }
    }

    /// Point `access.log` at `real` as the world's tool does.
    pub(super) fn link(&self, real: &Path) -> Result<()> {
        match self.links {
            Links::None => {}
            Links::Hard => {
                let _ = fs::remove_file(&self.live);
                fs::hard_link(real, &self.live)?;
            }
            Links::Beside | Links::Dated => {
                let tmp = self.logs.join("access.log.tmp-link");
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(real, &tmp)?;
                fs::rename(&tmp, &self.live)?;
            }
        }
        Ok(())
    }

    /// A world of links at midnight: the next file, the link moved to it;
    /// cron keeps four old files.
    pub(super) fn switch(&mut self) -> Result<()> {
        self.finish_partial()?;
        self.day += 1;
        let next = self.dated(self.day);
        if let Some(dir) = next.parent() {
            fs::create_dir_all(dir)?;
        }
        File::create(&next)?;
        self.link(&next)?;
        let old = std::mem::replace(&mut self.real, next);
        self.rotated.push(old);
        self.reopen()?;
        while self.rotated.len() > 4 {
            fs::remove_file(self.rotated.remove(0))?;
        }
        Ok(())
    }

    /// The config file for the flow as it stands (and an idle flow, so the
    /// file always has one).
    pub(super) fn write_config(&self) -> Result<()> {
        let f = &self.flow;
        let flow = if f.present {
            format!(
                "  - name: {name}\n    paths: [\"{logs}/{glob}\"]\n    format: {format}\n    start_at: {start_at}\n    stream: {stream}\n    mode: raw\n    linger: 200ms\n",
                name = f.name,
                logs = self.logs.display(),
                glob = if f.wide { "access.log*" } else { "access.log" },
                format = if f.spelled_out {
                    "'%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\"'"
                } else {
                    "combined"
                },
                start_at = if f.start_at_end { "end" } else { "beginning" },
                stream = self.name,
            )
        } else {
            String::new()
        };
        let text = format!(
            "state_dir: {dir}/state\ncheckpoint_interval: 200ms\nshutdown_timeout: 5s\nhost_id: model\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\nflows:\n{flow}  - name: idle\n    paths: [\"{dir}/idle/*.log\"]\n    format: combined\n    stream: {stream}\n",
            dir = self.dir.display(),
            endpoint = self.proxy.endpoint(),
            stream = self.name,
        );
        let tmp = self.config.with_extension("tmp");
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &self.config)?;
        Ok(())
    }

    /// What the running agent logged so far.
    pub(super) fn agent_log(&self) -> String {
        fs::read_to_string(self.dir.join(format!("agent-{}.log", self.starts))).unwrap_or_default()
    }

    /// Wait until the running agent's log holds `needle` `times` times.
    pub(super) fn log_says(&self, needle: &str, times: usize, within: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + within;
        while self.agent_log().matches(needle).count() < times {
            if std::time::Instant::now() > deadline {
                bail!("`{needle}` not in the agent's log within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Change the config; a running agent reloads it (SIGHUP), a stopped one
    /// reads it at its next start.
    pub(super) fn reload(&mut self, change: Change) -> Result<()> {
        let f = &mut self.flow;
        match change {
            Change::Glob => f.wide = !f.wide,
            Change::Format => f.spelled_out = !f.spelled_out,
            Change::Remove => f.present = false,
            Change::AddBack => f.present = true,
            Change::Rename => {
                self.renames += 1;
                f.name = format!("web{}", self.renames);
            }
        }
        self.write_config()?;
        if self.outage {
            // A flow stopped while its records cannot be acknowledged:
            // its new reading sends them again.
            self.repeats_allowed.push("a reload during an outage");
        }
        if let Some(agent) = &self.agent {
            // SIGHUP before the agent installed its handler would end it.
            self.log_says("tailrace starting", 1, Duration::from_secs(10))?;
            let before = self.agent_log().matches("configuration reloaded").count()
                + self
                    .agent_log()
                    .matches("configuration reload rejected")
                    .count();
            agent.signal("HUP")?;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while self.agent_log().matches("configuration reloaded").count()
                + self
                    .agent_log()
                    .matches("configuration reload rejected")
                    .count()
                <= before
            {
                if std::time::Instant::now() > deadline {
                    bail!("the reload did not finish within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// `truncate -s N` on the file Apache writes.
    pub(super) fn truncate(&mut self, at: u16, into: u8) -> Result<()> {
        self.finish_partial()?;
        let data = fs::read(&self.real)?;
        let starts: Vec<usize> = std::iter::once(0)
            .chain(
                data.iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .filter(|&i| i < data.len())
            .collect();
        let Some(&start) = starts.get(starts.len() * at as usize / 1000) else {
            return Ok(());
        };
        let cut = (start + into as usize).min(data.len());
        OpenOptions::new()
            .write(true)
            .open(&self.real)?
            .set_len(cut as u64)?;
        if cut > 0 {
            // Read again from its start: what it kept is sent again.
            self.repeats_allowed
                .push("a file cut to a size other than 0");
        }
        Ok(())
    }

    pub(super) fn rotated_dir(&self) -> PathBuf {
        if self.scheme.olddir {
            self.logs.join("old")
        } else {
            self.logs.clone()
        }
    }

    /// The name the next rotation gets; numbered names shift the older ones.
    pub(super) fn next_rotated_name(&mut self) -> Result<PathBuf> {
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
    pub(super) fn compress(&self, path: &Path) -> Result<PathBuf> {
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

    pub(super) fn rotate(&mut self, late: usize, slow: bool) -> Result<()> {
        if self.links != Links::None {
            return self.switch();
        }
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

    pub(super) fn start(&mut self) -> Result<()> {
        if self.agent.is_none() {
            self.write_config()?;
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

    pub(super) fn kill(&mut self) -> Result<()> {
        if let Some(mut agent) = self.agent.take() {
            agent.signal("KILL")?;
            agent.wait_timeout(Duration::from_secs(5))?;
            self.killed = true;
        }
        Ok(())
    }

    pub(super) fn apply(&mut self, op: &Op) -> Result<()> {
        // When each operation ran, next to the agents' logs.
        if let Ok(mut log) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("ops.log"))
        {
            let at = humantime::format_rfc3339_micros(std::time::SystemTime::now());
            let _ = writeln!(log, "{at} {op:?} (next line {})", self.next);
        }
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
            Op::DeleteLive if self.links != Links::None => self.switch()?,
            Op::DeleteLive => {
                self.finish_partial()?;
                fs::remove_file(&self.live)?;
                // Two lines to the deleted file, then a new one.
                self.append(2)?;
                self.reopen()?;
            }
            Op::Kill => self.kill()?,
            Op::Start => self.start()?,
            Op::Refuse => self.set_faults(Faults {
                p_5xx: 1.0,
                ..Faults::none()
            }),
            Op::Stall => self.set_faults(Faults {
                p_stall: 1.0,
                stall_for: Duration::from_secs(2),
                ..Faults::none()
            }),
            Op::RefuseRecords => self.set_faults(Faults {
                p_record: 0.5,
                seed: self.seed,
                ..Faults::none()
            }),
            Op::Heal => self.set_faults(Faults::none()),
            Op::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Op::Reload(change) => self.reload(change)?,
            Op::Truncate { at, into } => self.truncate(at, into)?,
            Op::Flood => {
                self.set_faults(Faults {
                    p_5xx: 1.0,
                    ..Faults::none()
                });
                // More than the queue (3 MiB) and a record.
                self.append(40_000)?;
                std::thread::sleep(Duration::from_millis(1500));
            }
            Op::LoseState { replace } => {
                // Only while the agent runs, once it has read its
                // checkpoint: an agent that finds none cannot know what it
                // shipped.
                if self.agent.is_some() {
                    self.log_says("tailrace starting", 1, Duration::from_secs(10))?;
                    let state = self.dir.join("state");
                    if replace {
                        let _ = fs::rename(&state, self.dir.join(format!("state.{}", self.next)));
                        fs::create_dir_all(&state)?;
                    } else {
                        let _ = fs::remove_dir_all(&state);
                    }
                    // It writes its positions again within a checkpoint
                    // interval; a crash before that is a loss no agent
                    // can avoid.
                    std::thread::sleep(Duration::from_millis(1000));
                }
            }
        }
        Ok(())
    }

    pub(super) fn set_faults(&mut self, faults: Faults) {
        self.outage = faults.p_5xx > 0.0 || faults.p_stall > 0.0 || faults.p_record > 0.0;
        self.proxy.set_faults(faults);
    }

    /// Ids of the complete lines on disk now, with the file each is in.
    pub(super) fn on_disk(&self) -> Result<BTreeMap<usize, PathBuf>> {
        let mut out = BTreeMap::new();
        let mut files = Vec::new();
        // The log directory, its `olddir`, dated directories; not links.
        let mut dirs = vec![self.logs.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                let t = e.file_type()?;
                if t.is_file() {
                    files.push(e.path());
                } else if t.is_dir() {
                    dirs.push(e.path());
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

pub(super) fn memchr_last_nl(data: &[u8]) -> Option<usize> {
    data.iter().rposition(|&b| b == b'\n')
}
