//! The processes a benchmark measures: starting a `sosqd` and reading what it costs
//! (resident memory, CPU time) from `/proc`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Why a daemon process could not be started or set up.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Spawning or talking to the process failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        cause: std::io::Error,
    },
    /// An admin command exited with an error.
    #[error("sosqd {args}: {stderr}")]
    Command {
        /// The arguments.
        args: String,
        /// What it printed.
        stderr: String,
    },
    /// The daemon exited before saying where it listens.
    #[error("sosqd exited before it was listening")]
    Exited,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> ProcessError + '_ {
    move |cause| ProcessError::Io {
        what: what.to_string(),
        cause,
    }
}

/// Runs `sosqd ARGS --data-dir DIR` (an admin command such as `user add`) and returns
/// what it printed, trimmed.
pub fn sosqd_command(bin: &Path, data_dir: &Path, args: &[&str]) -> Result<String, ProcessError> {
    let out = Command::new(bin)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .map_err(io("running sosqd"))?;
    if !out.status.success() {
        return Err(ProcessError::Command {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A `sosqd serve` process on a loopback port; killed when dropped.
pub struct DaemonProcess {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: String,
    /// Its certificate's fingerprint.
    pub fingerprint: String,
}

impl DaemonProcess {
    /// Starts `bin serve --listen 127.0.0.1:0 --data-dir DIR` with `extra` arguments and
    /// `RUST_LOG` set to `log_filter`, and waits for its "listening on" line. The rest of
    /// its log is drained (so it never blocks on a full pipe) into `log_file`, if given.
    pub fn start(
        bin: &Path,
        data_dir: &Path,
        extra: &[&str],
        log_filter: &str,
        log_file: Option<PathBuf>,
    ) -> Result<DaemonProcess, ProcessError> {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("starting sosqd"))?;
        let Some(stderr) = child.stderr.take() else {
            return Err(ProcessError::Exited);
        };
        let mut lines = BufReader::new(stderr).lines();
        let (addr, fingerprint) = loop {
            let Some(line) = lines.next() else {
                return Err(ProcessError::Exited);
            };
            let line = line.map_err(io("reading the sosqd log"))?;
            if let Some(ready) = crate::server::parse_listening_line(&line) {
                break ready;
            }
        };
        let mut log = match log_file {
            Some(path) => Some(std::fs::File::create(&path).map_err(io("creating the log file"))?),
            None => None,
        };
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{line}");
                }
            }
        });
        Ok(DaemonProcess {
            child,
            addr,
            fingerprint,
        })
    }

    /// Library connection options for a party with `token`.
    pub fn options(&self, token: Option<&str>) -> sosq::ConnectOptions {
        sosq::ConnectOptions {
            server: self.addr.clone(),
            fingerprint: self.fingerprint.clone(),
            token: token.map(str::to_string),
            ca: None,
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` in bytes (VmRSS from /proc), if readable.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU time process `pid` has used so far (utime + stime from /proc), if readable.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the ")" that ends the command name: state is field 3, utime 14.
    let after = stat.rsplit(')').next()?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of USER_HZ, which is 100 on x86 and ARM.
    Some((utime + stime) / 100.0)
}
