//! A real Apache httpd (Debian's `apache2` package) on a loopback port, `ab`
//! to drive it, and `logrotate` to rotate its access log.
//!
//! Everything lives in one temporary directory: the server config, pid file,
//! error log, document root, access logs, logrotate config and state file.
//! The server runs in the foreground as a child of the test and is stopped
//! (SIGTERM, then SIGKILL) when the [`Httpd`] value is dropped, so a failing
//! test never leaves one behind.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tailrace_tests::run_checked;

/// Where Debian installs the server binary and its modules.
const APACHE2: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";

const INSTALL: &str = "apt-get install apache2 apache2-utils logrotate";

/// Apache's own `combined` format (`%O`: bytes sent, headers included).
pub const COMBINED: &str = r#"%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\""#;

/// Fail (never skip) when a tool the Apache tests need is missing.
pub fn require_tools() -> Result<()> {
    ensure!(
        Path::new(APACHE2).is_file(),
        "{APACHE2} is missing: these tests need a real Apache httpd; run `{INSTALL}`"
    );
    for (tool, arg) in [
        ("ab", "-V"),
        ("logrotate", "--version"),
        ("zcat", "--version"),
    ] {
        let status = Command::new(tool)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => bail!("`{tool} {arg}` exited with {s}; run `{INSTALL}`"),
            Err(e) => bail!("`{tool}` is not runnable ({e}); run `{INSTALL}`"),
        }
    }
    Ok(())
}

/// Whether this process runs as root (then httpd drops to `www-data`).
fn running_as_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A running Apache httpd serving a static document root on 127.0.0.1.
pub struct Httpd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Httpd {
    /// Start httpd with its files in `dir` (created), its access log at
    /// `<dir>/logs/access.log` in `log_format` (an Apache LogFormat string,
    /// already escaped for a quoted httpd.conf argument), listening only on
    /// 127.0.0.1:`port`. Returns once the port accepts connections.
    pub fn start(dir: &Path, port: u16, log_format: &str) -> Result<Httpd> {
        require_tools()?;
        let docroot = dir.join("docroot");
        let logs = dir.join("logs");
        let mirror = dir.join("mirror");
        fs::create_dir_all(&docroot)?;
        fs::create_dir_all(&logs)?;
        fs::create_dir_all(&mirror)?;
        // The workers run as www-data: they must be able to read the docroot.
        for d in [dir, docroot.as_path(), logs.as_path()] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        }
        let index = docroot.join("index.html");
        fs::write(&index, "<html><body>tailrace</body></html>\n")?;
        fs::set_permissions(&index, fs::Permissions::from_mode(0o644))?;

        let user = if running_as_root()? {
            "User www-data\nGroup www-data\n"
        } else {
            ""
        };
        let conf = dir.join("httpd.conf");
        let d = dir.display();
        // mod_log_config and mod_unixd are compiled into Debian's binary; the
        // IfModule guards load them only where they are not.
        fs::write(
            &conf,
            format!(
                r#"ServerRoot "{d}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
<IfModule !unixd_module>
LoadModule unixd_module {MODULES}/mod_unixd.so
</IfModule>
<IfModule !log_config_module>
LoadModule log_config_module {MODULES}/mod_log_config.so
</IfModule>
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule dir_module {MODULES}/mod_dir.so
{user}PidFile "{d}/httpd.pid"
DefaultRuntimeDir "{d}"
Mutex file:{d} default
ErrorLog "{d}/error.log"
LogLevel notice
StartServers 2
ServerLimit 4
ThreadsPerChild 8
MaxRequestWorkers 32
KeepAlive Off
Timeout 10
GracefulShutdownTimeout 5
LogFormat "{log_format}" tailrace
CustomLog "{logs}/access.log" tailrace
CustomLog "{mirror}/all.log" tailrace
DocumentRoot "{docroot}"
DirectoryIndex index.html
<Directory />
    Require all granted
</Directory>
"#,
                logs = logs.display(),
                mirror = mirror.display(),
                docroot = docroot.display(),
            ),
        )?;

        let stderr = fs::File::create(dir.join("httpd.stderr"))?;
        let child = Command::new(APACHE2)
            .arg("-f")
            .arg(&conf)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {APACHE2}; run `{INSTALL}`"))?;
        let mut httpd = Httpd {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = httpd.child.try_wait()? {
                bail!(
                    "apache2 exited at start with {status}: {}{}",
                    fs::read_to_string(dir.join("httpd.stderr")).unwrap_or_default(),
                    fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            if httpd.pid_file().is_file()
                && tailrace_tests::wait_for_port(port, Duration::from_millis(200)).is_ok()
            {
                return Ok(httpd);
            }
            if Instant::now() > deadline {
                bail!("apache2 did not listen on 127.0.0.1:{port} within 15 s");
            }
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The main process's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("httpd.pid")
    }

    /// The directory holding the access logs.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// A second log of every request, in the same format, never rotated nor
    /// tailed: everything httpd wrote, to tell lines logrotate lost
    /// (copytruncate) from lines the agent invented.
    pub fn mirror_log(&self) -> PathBuf {
        self.dir.join("mirror/all.log")
    }

    /// The current access log.
    pub fn access_log(&self) -> PathBuf {
        self.logs().join("access.log")
    }

    /// Fail if the server has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "apache2 exited with {status}; error log:\n{}",
                fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
            );
        }
        Ok(())
    }

    fn pid(&self) -> u32 {
        fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| self.child.id())
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let pid = self.pid();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ab -n <requests> -c <concurrency> <url>` (no keep-alive); checks that
/// every request completed and returns how many were sent.
pub fn ab(url: &str, requests: usize, concurrency: usize) -> Result<usize> {
    let out = Command::new("ab")
        .args([
            "-q",
            "-s",
            "10",
            "-n",
            &requests.to_string(),
            "-c",
            &concurrency.to_string(),
        ])
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ab; run `{INSTALL}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "ab {url} failed with {}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> Option<usize> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let complete = field("Complete requests:").context("ab printed no `Complete requests:`")?;
    let failed = field("Failed requests:").context("ab printed no `Failed requests:`")?;
    ensure!(
        complete == requests && failed == 0,
        "ab {url}: {complete} of {requests} complete, {failed} failed:\n{stdout}"
    );
    Ok(complete)
}

/// How logrotate rotates the access log.
#[derive(Debug, Clone, Copy)]
pub enum Rotation {
    /// Rename, `create` a new file, then `USR1` (graceful restart) so httpd reopens it.
    CreateUsr1,
    /// Copy, then truncate in place; no signal. Old copies are gzipped one
    /// rotation late (`compress` + `delaycompress`).
    CopyTruncateCompress,
}

/// A logrotate config and state file for one httpd's access log.
pub struct Logrotate {
    conf: PathBuf,
    state: PathBuf,
}

impl Logrotate {
    /// Write `<dir>/logrotate.conf` for `httpd`'s access log.
    pub fn new(dir: &Path, httpd: &Httpd, how: Rotation) -> Result<Logrotate> {
        let body = match how {
            Rotation::CreateUsr1 => format!(
                "    nocompress\n    create\n    sharedscripts\n    postrotate\n        kill -USR1 \"$(cat '{}')\"\n    endscript\n",
                httpd.pid_file().display()
            ),
            Rotation::CopyTruncateCompress => {
                "    copytruncate\n    compress\n    delaycompress\n".to_string()
            }
        };
        let conf = dir.join("logrotate.conf");
        fs::write(
            &conf,
            format!(
                "{} {{\n    rotate 5\n    missingok\n    notifempty\n{body}}}\n",
                httpd.access_log().display()
            ),
        )?;
        // logrotate ignores config files writable by group or others.
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644))?;
        Ok(Logrotate {
            conf,
            state: dir.join("logrotate.state"),
        })
    }

    /// `logrotate -f -s <state> <conf>`.
    pub fn force(&self) -> Result<()> {
        run_checked(
            Command::new("logrotate")
                .arg("-f")
                .arg("-s")
                .arg(&self.state)
                .arg(&self.conf),
            &format!("logrotate (`{INSTALL}`)"),
        )?;
        Ok(())
    }
}

/// The access log files in `logs` (`access.log`, `access.log.1`,
/// `access.log.2.gz`, …), sorted by name.
pub fn log_files(logs: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(logs).with_context(|| format!("listing {}", logs.display()))? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("access.log")
        {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The bytes of a log file; `.gz` files are decompressed with `zcat`.
pub fn read_log(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "gz") {
        let out = run_checked(
            Command::new("zcat").arg(path),
            &format!("zcat {}", path.display()),
        )?;
        Ok(out.stdout)
    } else {
        fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// The complete lines of `files` (without their `\n`), and how many bytes
/// followed the last newline of each file (lines still being written).
pub fn lines_of(files: &[PathBuf]) -> Result<(Vec<Vec<u8>>, usize)> {
    let mut lines = Vec::new();
    let mut partial = 0;
    for path in files {
        let data = read_log(path)?;
        let mut rest = data.as_slice();
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            lines.push(rest[..pos].to_vec());
            rest = &rest[pos + 1..];
        }
        partial += rest.len();
    }
    Ok((lines, partial))
}
