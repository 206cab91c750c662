//! Child processes owned by a test.
//!
//! Every child gets its stdout and stderr redirected to files (not pipes: a chatty child can never
//! block on a full pipe, and the files survive a `kill -9` for post-mortem reading). A [`Proc`] is
//! killed with SIGKILL when dropped, so a failing test never leaves servers behind, and when the
//! test is panicking the tail of every log is printed so the failure explains itself.
//! Signals other than SIGKILL are sent with the shell's `kill` builtin to stay free of `libc`.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Lines of each log printed when a test fails.
const TAIL_LINES: usize = 60;

/// Set to `1` to keep log directories after a passing test too (a failing test always keeps
/// them and prints their paths).
const KEEP_LOGS_ENV: &str = "SYNTHFORGE_KEEP_LOGS";

/// How to start a process; kept by [`Proc`] so it can be restarted identically.
#[derive(Clone, Debug)]
pub struct ProcSpec {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    env_removes: Vec<OsString>,
    cwd: Option<PathBuf>,
}

impl ProcSpec {
    /// A process called `name` in logs and panics, running `program`.
    pub fn new(name: impl Into<String>, program: impl AsRef<Path>) -> Self {
        Self {
            name: name.into(),
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            envs: Vec::new(),
            env_removes: Vec::new(),
            cwd: None,
        }
    }

    /// Renames the process (as shown in logs and panic messages).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Removes an inherited variable (e.g. so a server never sees the test's AWS credentials).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env_removes.push(key.as_ref().to_os_string());
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Starts the process in the background.
    #[track_caller]
    pub fn spawn(&self) -> Proc {
        let logs = tempfile::Builder::new()
            .prefix(&format!("sf-{}-", sanitize(&self.name)))
            .tempdir()
            .expect("create log dir");
        let mut proc = Proc {
            spec: self.clone(),
            child: None,
            status: None,
            stdout_path: logs.path().join("stdout.log"),
            stderr_path: logs.path().join("stderr.log"),
            logs: Some(logs),
            started: Instant::now(),
        };
        proc.start();
        proc
    }

    /// Runs the process to completion (killing it and panicking after `timeout`) and returns
    /// its exit status and full output.
    #[track_caller]
    pub fn run_to_end(&self, timeout: Duration) -> Finished {
        let mut proc = self.spawn();
        let status = match proc.wait_timeout(timeout) {
            Some(status) => status,
            None => {
                proc.kill();
                // `proc` is dropped while unwinding and prints its log tail then.
                panic!(
                    "`{}` did not finish within {timeout:?} (its logs follow)",
                    self.display()
                );
            }
        };
        Finished {
            command: self.display(),
            status,
            stdout: proc.stdout(),
            stderr: proc.stderr(),
        }
    }
}

/// A running (or exited) child process, killed on drop. Dropped while the test panics, it
/// prints the tail of its logs and keeps the log directory.
pub struct Proc {
    spec: ProcSpec,
    child: Option<Child>,
    status: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    logs: Option<TempDir>,
    started: Instant,
}

impl Proc {
    fn start(&mut self) {
        // Append so that a restarted process keeps the history of its previous life.
        let open = |p: &Path| -> File {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("open log {}: {e}", p.display()))
        };
        let mut cmd = Command::new(&self.spec.program);
        cmd.args(&self.spec.args)
            .stdin(Stdio::null())
            .stdout(open(&self.stdout_path))
            .stderr(open(&self.stderr_path));
        for k in &self.spec.env_removes {
            cmd.env_remove(k);
        }
        for (k, v) in &self.spec.envs {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.spec.cwd {
            cmd.current_dir(dir);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", self.spec.display()));
        self.child = Some(child);
        self.status = None;
        self.started = Instant::now();
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &ProcSpec {
        &self.spec
    }

    /// OS process id of the current incarnation.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("process not started").id()
    }

    /// Exit status if the process has exited (reaps it), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                self.status = child.try_wait().expect("try_wait");
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Waits for a successful exit, panicking on timeout or failure (the log tail is printed
    /// when the panicking test drops this `Proc`).
    #[track_caller]
    pub fn wait_success(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_timeout(timeout) {
            Some(status) if status.success() => status,
            Some(status) => panic!("{} exited with {status}", self.name()),
            None => panic!("{} still running after {timeout:?}", self.name()),
        }
    }

    /// SIGKILL and reap. A no-op if it already exited.
    pub fn kill(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, `STOP`, `CONT`, `KILL`, ...) with the shell's `kill`.
    #[track_caller]
    pub fn signal(&mut self, sig: &str) {
        if self.try_wait().is_some() {
            panic!("cannot send SIG{sig} to {}: it already exited", self.name());
        }
        // The shell's builtin `kill`: /bin/kill (procps) is missing from slim images.
        let status = Command::new("sh")
            .args(["-c", "kill -s \"$0\" \"$1\"", sig, &self.pid().to_string()])
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -s {sig} {} failed", self.pid());
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but stops answering, like a hung host.
    #[track_caller]
    pub fn pause(&mut self) {
        self.signal("STOP");
    }

    /// Resumes a process frozen by [`Proc::pause`].
    #[track_caller]
    pub fn resume(&mut self) {
        self.signal("CONT");
    }

    /// Asks for a graceful stop (SIGTERM).
    #[track_caller]
    pub fn terminate(&mut self) {
        self.signal("TERM");
    }

    /// Kills the current incarnation (if alive) and starts the same command again; logs are
    /// appended to the same files.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Time since the current incarnation started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    pub fn log_dir(&self) -> &Path {
        self.stdout_path.parent().expect("log dir")
    }

    /// Whether stdout or stderr contains `needle` so far.
    pub fn output_contains(&self, needle: &str) -> bool {
        self.stdout().contains(needle) || self.stderr().contains(needle)
    }

    /// The last `n` lines of stdout and stderr, labelled, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        format!(
            "----- {name} ({cmd}) logs in {dir} -----\n--- stdout (last {n} lines) ---\n{out}\n--- stderr (last {n} lines) ---\n{err}\n----- end of {name} -----",
            name = self.name(),
            cmd = self.spec.display(),
            dir = self.log_dir().display(),
            out = or_empty(tail(&self.stdout(), n)),
            err = or_empty(tail(&self.stderr(), n)),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("{}", self.log_tail(TAIL_LINES));
        }
        // Keep the full logs of a failed test for inspection (CI can collect /tmp/sf-*).
        if panicking || std::env::var(KEEP_LOGS_ENV).is_ok_and(|v| v == "1") {
            if let Some(dir) = self.logs.take() {
                eprintln!("kept logs of {} in {}", self.name(), dir.keep().display());
            }
        }
    }
}

/// A process that ran to completion.
#[derive(Debug)]
pub struct Finished {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout followed by stderr, for searching messages wherever the program put them.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "`{}` failed with {}\n{}",
            self.command,
            self.status,
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "`{}` succeeded but was expected to fail\n{}",
            self.command,
            self.describe()
        );
        self
    }

    /// Both streams, tails only, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            tail(&self.stdout, TAIL_LINES),
            tail(&self.stderr, TAIL_LINES)
        )
    }
}

fn or_empty(text: String) -> String {
    if text.is_empty() {
        "(empty)".into()
    } else {
        text
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
