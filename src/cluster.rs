//! The standalone cluster as Flink's `start-cluster.sh` and `stop-cluster.sh` run it
//! (`bin/config.sh`, `bin/flink-daemon.sh`): what `yarnflow cluster start|stop` does.
//!
//! * `<conf dir>/masters`: one JobManager per line, `host[:webui-port]`; the port becomes that
//!   JobManager's `rest.port`. `<conf dir>/workers`: one TaskManager per line, `host`. `#` starts
//!   a comment, blank lines are ignored, anything else is one error naming file:line.
//! * Entries for this host (`localhost`, `127.0.0.1` or this machine's name, [`ThisHost`]) start
//!   as daemons: their own session (`setsid`), stdin closed, stdout and stderr appended to
//!   `<log dir>/yarnflow-<user>-<daemon>-<n>-<host>.log`, the pid recorded one per line in
//!   `<env.pid.dir>/yarnflow-<user>-<daemon>.pid`. `<daemon>` is Flink's name for it
//!   ([`DaemonKind::name`]), `<n>` the number of its kind already running. Entries for other
//!   hosts are skipped: Flink starts them over ssh, yarnflow leaves them to `yarnflow cluster
//!   start` on that host.
//! * Stopping sends SIGTERM to every recorded pid that still runs the daemon, waits for them to
//!   exit, SIGKILLs what is left after the grace period and removes the pid file.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The file listing the JobManagers, inside the configuration directory.
pub const MASTERS_FILE: &str = "masters";
/// The file listing the TaskManagers, inside the configuration directory.
pub const WORKERS_FILE: &str = "workers";

/// How long [`Daemons::stop`] waits for SIGKILLed processes to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Why the cluster's files could not be read or its daemons started or stopped: one line naming
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{file}: missing: list the {what} there, one {form} per line")]
    Missing {
        file: PathBuf,
        what: &'static str,
        form: &'static str,
    },
    #[error("{file}: lists no {what} (one {form} per line)")]
    Empty {
        file: PathBuf,
        what: &'static str,
        form: &'static str,
    },
    #[error("{file}:{line}: {message}")]
    Malformed {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl ClusterError {
    fn io(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> ClusterError {
        let path = path.to_path_buf();
        move |source| ClusterError::Io {
            path,
            action,
            source,
        }
    }
}

/// One line of `masters`: a JobManager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub host: String,
    /// Its REST port (`rest.port`); `None`: the configured one.
    pub rest_port: Option<u16>,
}

/// The hosts of a configuration directory's `masters` and `workers` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFiles {
    pub masters: Vec<Master>,
    pub workers: Vec<String>,
}

const MASTER_FORM: &str = "host[:webui-port]";
const WORKER_FORM: &str = "host";

impl ClusterFiles {
    /// Reads `<conf_dir>/masters` (at least one entry) and `<conf_dir>/workers`.
    pub fn read(conf_dir: &Path) -> Result<ClusterFiles, ClusterError> {
        let masters_file = conf_dir.join(MASTERS_FILE);
        let text = read_list(&masters_file, "JobManagers", MASTER_FORM)?;
        let masters = parse_masters(&text, &masters_file)?;
        if masters.is_empty() {
            return Err(ClusterError::Empty {
                file: masters_file,
                what: "JobManagers",
                form: MASTER_FORM,
            });
        }
        let workers_file = conf_dir.join(WORKERS_FILE);
        let text = read_list(&workers_file, "TaskManagers", WORKER_FORM)?;
        let workers = parse_workers(&text, &workers_file)?;
        Ok(ClusterFiles { masters, workers })
    }
}

fn read_list(file: &Path, what: &'static str, form: &'static str) -> Result<String, ClusterError> {
    std::fs::read_to_string(file).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ClusterError::Missing {
            file: file.to_path_buf(),
            what,
            form,
        },
        _ => ClusterError::io(file, "read")(e),
    })
}

/// The entries of a host list: (line number, text) without comments, blank lines skipped.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or_default().trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// Parses a `masters` file's text (`file` names it in errors). One host and port twice is an
/// error too: the second JobManager could never serve.
pub fn parse_masters(text: &str, file: &Path) -> Result<Vec<Master>, ClusterError> {
    let mut masters: Vec<Master> = Vec::new();
    for (line, entry) in entries(text) {
        let malformed = |message: String| ClusterError::Malformed {
            file: file.to_path_buf(),
            line,
            message,
        };
        let (host, port) = match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        };
        check_host(host, MASTER_FORM).map_err(malformed)?;
        let rest_port = port
            .map(|p| {
                p.parse::<u16>().map_err(|_| {
                    malformed(format!(
                        "'{p}' is not a port (0..65535; expected {MASTER_FORM})"
                    ))
                })
            })
            .transpose()?;
        if rest_port.is_some_and(|p| p != 0)
            && masters
                .iter()
                .any(|m| m.rest_port == rest_port && m.host.eq_ignore_ascii_case(host))
        {
            return Err(malformed(format!(
                "'{entry}' again: two JobManagers cannot share one REST port"
            )));
        }
        masters.push(Master {
            host: host.to_string(),
            rest_port,
        });
    }
    Ok(masters)
}

/// Parses a `workers` file's text (`file` names it in errors).
pub fn parse_workers(text: &str, file: &Path) -> Result<Vec<String>, ClusterError> {
    entries(text)
        .map(|(line, host)| {
            check_host(host, WORKER_FORM)
                .map(|()| host.to_string())
                .map_err(|message| ClusterError::Malformed {
                    file: file.to_path_buf(),
                    line,
                    message,
                })
        })
        .collect()
}

fn check_host(host: &str, form: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(format!("no host (expected {form})"));
    }
    match host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        Some(c) => Err(format!(
            "'{host}' is not a host name (character {c:?}; expected {form})"
        )),
        None => Ok(()),
    }
}

/// The names that mean this machine in `masters` and `workers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThisHost {
    /// This machine's host name (`gethostname`).
    pub name: String,
}

impl ThisHost {
    pub fn get() -> ThisHost {
        ThisHost { name: hostname() }
    }

    /// `localhost`, `127.0.0.1`, this machine's name or its first label (case-insensitive).
    pub fn is(&self, host: &str) -> bool {
        let short = self.name.split('.').next().unwrap_or_default();
        host.eq_ignore_ascii_case("localhost")
            || host == "127.0.0.1"
            || host.eq_ignore_ascii_case(&self.name)
            || (!short.is_empty() && host.eq_ignore_ascii_case(short))
    }
}

/// This machine's host name: `gethostname`, else `$HOSTNAME`, else `localhost`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let from_libc = (rc == 0)
        .then(|| {
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        })
        .filter(|h| !h.is_empty());
    from_libc
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// Who owns the daemons, in pid and log file names (Flink's `FLINK_IDENT_STRING`, which
/// defaults to `$USER`): `$USER`, else `$LOGNAME`, else the effective user's name (its id if it
/// has none).
pub fn ident() -> String {
    ["USER", "LOGNAME"]
        .into_iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(effective_user)
}

fn effective_user() -> String {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    // SAFETY: every pointer is valid for the call: `pwd` and `found` are ours, and `buf` is
    // valid for its length; `pw_name` points into `buf` when `found` is set.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut found = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc == 0 && !found.is_null() && !pwd.pw_name.is_null() {
            let name = std::ffi::CStr::from_ptr(pwd.pw_name).to_string_lossy();
            if !name.is_empty() {
                return name.into_owned();
            }
        }
    }
    uid.to_string()
}

/// The two kinds of daemon of a standalone cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonKind {
    JobManager,
    TaskManager,
}

impl DaemonKind {
    /// Flink's name of the daemon (`flink-daemon.sh`): in pid and log file names and what
    /// `yarnflow cluster` prints.
    pub fn name(self) -> &'static str {
        match self {
            DaemonKind::JobManager => "standalonesession",
            DaemonKind::TaskManager => "taskexecutor",
        }
    }

    /// The yarnflow subcommand the daemon runs.
    pub fn subcommand(self) -> &'static str {
        match self {
            DaemonKind::JobManager => "jobmanager",
            DaemonKind::TaskManager => "taskmanager",
        }
    }
}

/// One daemon started by [`Daemons::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

/// How one recorded daemon ended in [`Daemons::stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited after SIGTERM.
    Terminated,
    /// It still ran after the grace period and was SIGKILLed.
    Killed,
    /// It was not running anymore (or its pid now belongs to another program): not signalled.
    NotRunning,
    /// It survived SIGKILL (a process in uninterruptible sleep): its pid stays recorded.
    StillRunning,
}

/// This host's daemons of one user: their pid files in `pid_dir`.
#[derive(Debug, Clone)]
pub struct Daemons {
    /// `env.pid.dir`.
    pub pid_dir: PathBuf,
    /// [`ident`].
    pub ident: String,
    /// This machine's name, in log file names.
    pub host: String,
}

impl Daemons {
    /// `<pid dir>/yarnflow-<ident>-<daemon>.pid`.
    pub fn pid_file(&self, kind: DaemonKind) -> PathBuf {
        self.pid_dir
            .join(format!("yarnflow-{}-{}.pid", self.ident, kind.name()))
    }

    /// The pids recorded for `kind`, in start order (none without a pid file).
    pub fn recorded(&self, kind: DaemonKind) -> Result<Vec<u32>, ClusterError> {
        let file = self.pid_file(kind);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(ClusterError::io(&file, "read")(e)),
        };
        entries(&text)
            .map(|(line, pid)| {
                pid.parse::<u32>()
                    .ok()
                    .filter(|p| libc::pid_t::try_from(*p).is_ok_and(|p| p > 0))
                    .ok_or_else(|| ClusterError::Malformed {
                        file: file.clone(),
                        line,
                        message: format!("'{pid}' is not a process id"),
                    })
            })
            .collect()
    }

    fn record(&self, kind: DaemonKind, pids: &[u32]) -> Result<(), ClusterError> {
        let file = self.pid_file(kind);
        if pids.is_empty() {
            return match std::fs::remove_file(&file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(ClusterError::io(&file, "remove")(e))
                }
                _ => Ok(()),
            };
        }
        std::fs::create_dir_all(&self.pid_dir)
            .map_err(ClusterError::io(&self.pid_dir, "create"))?;
        let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
        std::fs::write(&file, text).map_err(ClusterError::io(&file, "write"))
    }

    /// Starts `exe <kind's subcommand> ARGS` detached, its output appended to a log file in
    /// `log_dir`, and records its pid (after those of its kind still running).
    pub fn start(
        &self,
        kind: DaemonKind,
        exe: &Path,
        args: &[OsString],
        log_dir: &Path,
    ) -> Result<Started, ClusterError> {
        let mut pids = self.recorded(kind)?;
        pids.retain(|p| runs(*p, kind));
        std::fs::create_dir_all(log_dir).map_err(ClusterError::io(log_dir, "create"))?;
        let log = log_dir.join(format!(
            "yarnflow-{}-{}-{}-{}.log",
            self.ident,
            kind.name(),
            pids.len(),
            self.host
        ));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(ClusterError::io(&log, "open"))?;
        let err = out.try_clone().map_err(ClusterError::io(&log, "open"))?;
        let mut command = std::process::Command::new(exe);
        command
            .arg(kind.subcommand())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // A log file, not a terminal: no colour codes (tracing honours NO_COLOR).
        if std::env::var_os("NO_COLOR").is_none() {
            command.env("NO_COLOR", "1");
        }
        // Its own session: no terminal's or caller's signals reach it, and nothing waits for it.
        // SAFETY: setsid is async-signal-safe; the closure touches nothing else.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(ClusterError::io(exe, "start"))?;
        let pid = child.id();
        // Not waited for: the daemon outlives this process, which exits soon and leaves it
        // to init (dropping a std Child neither kills nor waits).
        drop(child);
        pids.push(pid);
        self.record(kind, &pids)?;
        Ok(Started { pid, log })
    }

    /// Stops every recorded daemon of `kind`: SIGTERM, up to `grace` for them to exit, then
    /// SIGKILL. Returns each recorded pid with how it ended, in start order, and removes the
    /// pid file (keeping only pids that survived SIGKILL).
    pub async fn stop(
        &self,
        kind: DaemonKind,
        grace: Duration,
    ) -> Result<Vec<(u32, Stopped)>, ClusterError> {
        let pids = self.recorded(kind)?;
        let mut ended: Vec<(u32, Option<Stopped>)> = pids
            .iter()
            .map(|&pid| {
                let signalled = runs(pid, kind) && signal(pid, libc::SIGTERM);
                (pid, (!signalled).then_some(Stopped::NotRunning))
            })
            .collect();
        let deadline = Instant::now() + grace;
        let mut killed = None;
        loop {
            for (pid, end) in ended.iter_mut().filter(|(_, e)| e.is_none()) {
                if !runs(*pid, kind) {
                    *end = Some(if killed.is_some() {
                        Stopped::Killed
                    } else {
                        Stopped::Terminated
                    });
                }
            }
            let left: Vec<u32> = ended
                .iter()
                .filter(|(_, e)| e.is_none())
                .map(|(p, _)| *p)
                .collect();
            if left.is_empty() {
                break;
            }
            match killed {
                None if Instant::now() >= deadline => {
                    for pid in left {
                        signal(pid, libc::SIGKILL);
                    }
                    killed = Some(Instant::now());
                }
                Some(at) if at.elapsed() >= KILL_WAIT => {
                    for (_, end) in ended.iter_mut().filter(|(_, e)| e.is_none()) {
                        *end = Some(Stopped::StillRunning);
                    }
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let ended: Vec<(u32, Stopped)> = ended
            .into_iter()
            .map(|(pid, end)| (pid, end.unwrap_or(Stopped::StillRunning)))
            .collect();
        let survivors: Vec<u32> = ended
            .iter()
            .filter(|(_, e)| *e == Stopped::StillRunning)
            .map(|(p, _)| *p)
            .collect();
        self.record(kind, &survivors)?;
        Ok(ended)
    }
}

/// Sends `signal` to `pid`; `false` if there is no such process (or it is not ours).
fn signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // pid 0 and negative pids name process groups: never signalled.
    // SAFETY: kill has no memory-safety preconditions.
    pid > 0 && unsafe { libc::kill(pid, signal) } == 0
}

/// Whether `pid` is a live process of this user running `kind`'s subcommand. Where `/proc`
/// exists, a zombie or a process running something else (the pid was reused) does not count.
fn runs(pid: u32, kind: DaemonKind) -> bool {
    if !signal(pid, 0) {
        return false;
    }
    let proc = Path::new("/proc").join(pid.to_string());
    if let Ok(stat) = std::fs::read_to_string(proc.join("stat")) {
        // `pid (comm) S ...`: the state follows the last ')'.
        let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
        if state.starts_with('Z') || state.starts_with('X') {
            return false;
        }
    }
    match std::fs::read(proc.join("cmdline")) {
        Ok(cmdline) => cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == kind.subcommand().as_bytes()),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masters(text: &str) -> Result<Vec<Master>, String> {
        parse_masters(text, Path::new("conf/masters")).map_err(|e| e.to_string())
    }

    fn master(host: &str, rest_port: Option<u16>) -> Master {
        Master {
            host: host.into(),
            rest_port,
        }
    }

    #[test]
    fn masters_lines_are_host_and_optional_port_with_comments_and_blank_lines() {
        let text =
            "# the JobManagers\nlocalhost:8081\n\n  jm-2.example.com:8082   # standby\njm3\n";
        assert_eq!(
            masters(text).unwrap(),
            vec![
                master("localhost", Some(8081)),
                master("jm-2.example.com", Some(8082)),
                master("jm3", None),
            ]
        );
        assert!(masters("# none\n\n").unwrap().is_empty());
    }

    #[test]
    fn a_malformed_masters_line_names_file_and_line() {
        assert_eq!(
            masters("localhost:8081\nlocalhost:80x1\n").unwrap_err(),
            "conf/masters:2: '80x1' is not a port (0..65535; expected host[:webui-port])"
        );
        assert_eq!(
            masters("\n:8081\n").unwrap_err(),
            "conf/masters:2: no host (expected host[:webui-port])"
        );
        assert_eq!(
            masters("a b:8081").unwrap_err(),
            "conf/masters:1: 'a b' is not a host name (character ' '; expected host[:webui-port])"
        );
        assert!(
            masters("h:70000")
                .unwrap_err()
                .starts_with("conf/masters:1: '70000'")
        );
        assert_eq!(
            masters("localhost:8081\nh:8081\nLOCALHOST:8081\n").unwrap_err(),
            "conf/masters:3: 'LOCALHOST:8081' again: two JobManagers cannot share one REST port"
        );
        assert_eq!(masters("h\nh\nh:0\nh:0").unwrap().len(), 4);
        assert!(
            masters("h:1:2")
                .unwrap_err()
                .starts_with("conf/masters:1: '1:2'")
        );
    }

    #[test]
    fn the_example_files_in_conf_name_this_host() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        assert_eq!(
            ClusterFiles::read(&dir).unwrap(),
            ClusterFiles {
                masters: vec![master("localhost", Some(8081))],
                workers: vec!["localhost".into()],
            }
        );
    }

    #[test]
    fn workers_lines_are_hosts() {
        let file = Path::new("conf/workers");
        assert_eq!(
            parse_workers("localhost\n# x\n\n127.0.0.1 # two\n", file).unwrap(),
            vec!["localhost", "127.0.0.1"]
        );
        assert_eq!(
            parse_workers("localhost\nlocalhost:8081\n", file)
                .unwrap_err()
                .to_string(),
            "conf/workers:2: 'localhost:8081' is not a host name (character ':'; expected host)"
        );
    }

    #[test]
    fn the_files_must_exist_and_masters_list_a_jobmanager() {
        let dir =
            std::env::temp_dir().join(format!("yarnflow-cluster-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let err = ClusterFiles::read(&dir).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "masters: missing: list the JobManagers there, one host[:webui-port] per line"
            ),
            "{err}"
        );
        std::fs::write(dir.join(MASTERS_FILE), "# nobody\n").unwrap();
        let err = ClusterFiles::read(&dir).unwrap_err().to_string();
        assert!(
            err.ends_with("masters: lists no JobManagers (one host[:webui-port] per line)"),
            "{err}"
        );
        std::fs::write(dir.join(MASTERS_FILE), "localhost:8081\n").unwrap();
        let err = ClusterFiles::read(&dir).unwrap_err().to_string();
        assert!(
            err.ends_with("workers: missing: list the TaskManagers there, one host per line"),
            "{err}"
        );
        std::fs::write(dir.join(WORKERS_FILE), "").unwrap();
        assert_eq!(
            ClusterFiles::read(&dir).unwrap(),
            ClusterFiles {
                masters: vec![master("localhost", Some(8081))],
                workers: vec![],
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_host_is_localhost_the_loopback_address_or_its_name() {
        let this = ThisHost {
            name: "vm.example.com".into(),
        };
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "vm.example.com",
            "VM",
            "vm",
        ] {
            assert!(this.is(host), "{host}");
        }
        for host in ["vm2", "other.example.com", "127.0.0.2", "example.com"] {
            assert!(!this.is(host), "{host}");
        }
        assert!(!ThisHost::get().name.is_empty());
        assert!(!effective_user().is_empty());
    }

    #[test]
    fn pid_files_hold_one_pid_a_line_and_reject_anything_else() {
        let dir =
            std::env::temp_dir().join(format!("yarnflow-cluster-pids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let daemons = Daemons {
            pid_dir: dir.clone(),
            ident: "alice".into(),
            host: "vm".into(),
        };
        let file = daemons.pid_file(DaemonKind::JobManager);
        assert_eq!(file, dir.join("yarnflow-alice-standalonesession.pid"));
        assert!(daemons.recorded(DaemonKind::JobManager).unwrap().is_empty());
        daemons.record(DaemonKind::JobManager, &[12, 34]).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "12\n34\n");
        assert_eq!(
            daemons.recorded(DaemonKind::JobManager).unwrap(),
            vec![12, 34]
        );
        std::fs::write(&file, "12\n-1\n").unwrap();
        assert_eq!(
            daemons
                .recorded(DaemonKind::JobManager)
                .unwrap_err()
                .to_string(),
            format!("{}:2: '-1' is not a process id", file.display())
        );
        std::fs::write(&file, "0\n").unwrap();
        assert!(daemons.recorded(DaemonKind::JobManager).is_err());
        daemons.record(DaemonKind::JobManager, &[]).unwrap();
        assert!(!file.exists());
        daemons.record(DaemonKind::JobManager, &[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A daemon started detached, stopped with SIGTERM; one that ignores SIGTERM is killed; a
    /// recorded pid that runs something else is left alone.
    #[tokio::test]
    async fn daemons_start_detached_and_stop_with_sigterm_then_sigkill() {
        let dir =
            std::env::temp_dir().join(format!("yarnflow-cluster-daemons-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let daemons = Daemons {
            pid_dir: dir.join("pids"),
            ident: "alice".into(),
            host: "vm".into(),
        };
        let kind = DaemonKind::TaskManager;
        std::fs::create_dir_all(&dir).unwrap();
        // A stand-in for the binary: $1 is the subcommand, as in a daemon's argv. A child
        // writes it: a write descriptor of this process, inherited by a process another test
        // forks at that moment, would fail its exec with ETXTBSY.
        let exe = dir.join("fake-yarnflow");
        let script = "#!/bin/sh\nif [ \"$2\" = stubborn ]; then trap '' TERM; fi\necho started $1 $$\nwhile true; do sleep 0.05; done\n";
        let written = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
                "sh",
                script,
            ])
            .arg(&exe)
            .status()
            .unwrap();
        assert!(written.success());
        let polite = daemons.start(kind, &exe, &[], &dir.join("log")).unwrap();
        let stubborn = daemons
            .start(kind, &exe, &["stubborn".into()], &dir.join("log"))
            .unwrap();
        assert_eq!(
            polite.log,
            dir.join("log/yarnflow-alice-taskexecutor-0-vm.log")
        );
        assert_eq!(
            stubborn.log,
            dir.join("log/yarnflow-alice-taskexecutor-1-vm.log")
        );
        assert_eq!(
            daemons.recorded(kind).unwrap(),
            vec![polite.pid, stubborn.pid]
        );
        // Both run in their own session.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&stubborn.log)
            .unwrap_or_default()
            .contains("started")
        {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for pid in [polite.pid, stubborn.pid] {
            assert_eq!(
                unsafe { libc::getsid(pid as libc::pid_t) },
                pid as libc::pid_t
            );
            assert!(runs(pid, kind));
            assert!(!runs(pid, DaemonKind::JobManager));
        }
        let stopped = daemons
            .stop(kind, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(
            stopped,
            vec![
                (polite.pid, Stopped::Terminated),
                (stubborn.pid, Stopped::Killed)
            ]
        );
        assert!(!daemons.pid_file(kind).exists());
        for pid in [polite.pid, stubborn.pid] {
            assert!(!runs(pid, kind));
        }
        // A pid that runs something else now (this test) is not signalled.
        daemons.record(kind, &[std::process::id()]).unwrap();
        assert_eq!(
            daemons
                .stop(kind, Duration::from_millis(300))
                .await
                .unwrap(),
            vec![(std::process::id(), Stopped::NotRunning)]
        );
        assert_eq!(daemons.stop(kind, Duration::ZERO).await.unwrap(), vec![]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
