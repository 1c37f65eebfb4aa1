//! Spawning an agent CLI in its own process group and supervising it to the
//! end: timeout, cancellation and shutdown all go through one signal ladder
//! aimed at the whole group.
//!
//! This file only starts, signals and reaps processes and reports how the run
//! ended. It may not touch the event log or task files, and it never runs a
//! shell: argv goes to the OS as given.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

/// How a run is stopped: SIGINT to the group, wait up to `interrupt`,
/// SIGTERM, wait up to `terminate`, then SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ladder {
    pub interrupt: Duration,
    pub terminate: Duration,
}

/// Everything needed to start one agent process.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Added to (not replacing) the daemon's own environment.
    pub env: Vec<(String, String)>,
    /// Appended to, created with its parent directories if missing.
    pub stdout: PathBuf,
    /// Appended to, created with its parent directories if missing.
    pub stderr: PathBuf,
}

/// Why the caller asked a run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Cancel,
    Shutdown,
}

/// What ended the run. A run that had to be stopped keeps that ending even
/// if its exit status looks clean, because the agent did not finish on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Exited,
    TimedOut,
    Stopped(StopReason),
}

/// How a run ended. `exit_code` and `signal` describe the group leader;
/// `duration` runs from spawn to the leader's exit.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ending: Ending,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
}

/// A spawned agent process, leader of its own process group.
///
/// Dropping it without calling [`Running::supervise`] to completion (for
/// example when the supervising task is aborted) SIGKILLs the whole group, so
/// an abandoned run cannot keep working behind the daemon's back.
#[derive(Debug)]
pub struct Running {
    /// Also the process group id.
    pub pid: u32,
    pub started_at: SystemTime,
    started: Instant,
    child: Child,
    guard: GroupGuard,
}

/// Spawn `argv[0]` with the remaining arguments, without a shell, in a new
/// process group whose id is the child's pid.
///
/// A bare program name is looked up in PATH the way std does. A relative path
/// containing `/` is taken relative to `cwd`, because platforms disagree on
/// whether the parent's or the child's directory applies. stdin is
/// `/dev/null`; stdout and stderr are opened in append mode and handed to the
/// child directly, so output lands in the files as it is written.
///
/// Must be called from within a Tokio runtime, which reaps the child.
pub fn spawn(spec: &RunSpec) -> io::Result<Running> {
    let Some(program) = spec.argv.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("empty argv for a run in {}", spec.cwd.display()),
        ));
    };
    let stdout = open_log(&spec.stdout)?;
    let stderr = open_log(&spec.stderr)?;

    let path = Path::new(program);
    let resolved = if path.is_relative() && program.contains('/') {
        spec.cwd.join(path)
    } else {
        path.to_path_buf()
    };

    let mut command = Command::new(resolved);
    command
        .args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let describe = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot spawn {program:?} in {}: {e}", spec.cwd.display()),
        )
    };
    let child = command.spawn().map_err(describe)?;
    let pid = child
        .id()
        .ok_or_else(|| describe(io::Error::other("child exited before its pid was known")))?;
    Ok(Running {
        pid,
        started_at: SystemTime::now(),
        started: Instant::now(),
        child,
        guard: GroupGuard {
            pgid: pid,
            armed: true,
        },
    })
}

fn open_log(path: &Path) -> io::Result<File> {
    let describe =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot open log file {}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(describe)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(describe)
}

enum Trigger {
    Exited(io::Result<ExitStatus>),
    TimedOut,
    Stopped(StopReason),
}

impl Running {
    /// Wait for the child, stopping it through `ladder` when `timeout`
    /// (counted from spawn) elapses or when `stop` becomes `Some(reason)`.
    ///
    /// Whatever the ending, once the leader has exited the whole group is
    /// SIGKILLed, so background grandchildren never outlive the run. A stop
    /// sender that is dropped simply means no stop will come.
    pub async fn supervise(
        mut self,
        timeout: Option<Duration>,
        ladder: Ladder,
        mut stop: watch::Receiver<Option<StopReason>>,
    ) -> Outcome {
        let deadline = timeout.map(|t| self.started + t);
        let trigger = tokio::select! {
            // A child that has already finished is reported as exited even if
            // a stop or the deadline arrived at the same moment.
            biased;
            status = self.child.wait() => Trigger::Exited(status),
            reason = stop_requested(&mut stop) => Trigger::Stopped(reason),
            () = sleep_until(deadline) => Trigger::TimedOut,
        };
        let (ending, status) = match trigger {
            Trigger::Exited(status) => (Ending::Exited, status),
            Trigger::TimedOut => (Ending::TimedOut, self.climb(ladder).await),
            Trigger::Stopped(reason) => (Ending::Stopped(reason), self.climb(ladder).await),
        };
        let duration = self.started.elapsed();
        self.guard.fire();
        let (exit_code, signal) = match status {
            Ok(status) => (status.code(), status.signal()),
            Err(_) => (None, None),
        };
        Outcome {
            ending,
            exit_code,
            signal,
            duration,
        }
    }

    async fn climb(&mut self, ladder: Ladder) -> io::Result<ExitStatus> {
        // The guard's copy, because the public `pid` field can be overwritten.
        let pgid = self.guard.pgid;
        for (signal, grace) in [
            (libc::SIGINT, ladder.interrupt),
            (libc::SIGTERM, ladder.terminate),
        ] {
            // A failed send means the group is already gone; waiting below
            // then returns at once.
            let _ = signal_group(pgid, signal);
            if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
                return status;
            }
        }
        let _ = signal_group(pgid, libc::SIGKILL);
        self.child.wait().await
    }
}

async fn stop_requested(stop: &mut watch::Receiver<Option<StopReason>>) -> StopReason {
    loop {
        if let Some(reason) = *stop.borrow_and_update() {
            return reason;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// SIGKILLs the group when dropped while armed, so that every way out of a
/// run, including an aborted supervisor, cleans up the group.
#[derive(Debug)]
struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl GroupGuard {
    fn fire(&mut self) {
        if self.armed {
            self.armed = false;
            // ESRCH is the normal case: the group had already emptied itself.
            let _ = signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.fire();
    }
}

/// Send SIGKILL to process group `pgid` if it still exists. Used at restart
/// to clear children orphaned by a daemon crash. Returns whether anything was
/// signalled.
///
/// Refuses pgid 0 and 1 (which `kill` reads as "own group" and "every
/// process") and the daemon's own group.
pub fn kill_orphan_group(pgid: u32) -> bool {
    // SAFETY: getpgrp has no preconditions and cannot fail.
    let own = unsafe { libc::getpgrp() };
    if i32::try_from(pgid).is_ok_and(|p| p == own) {
        return false;
    }
    signal_group(pgid, libc::SIGKILL).is_ok()
}

fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let pgid = match i32::try_from(pgid) {
        Ok(p) if p > 1 => p,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to signal process group {pgid}"),
            ));
        }
    };
    // SAFETY: kill only reads its integer arguments; a negative pid targets
    // exactly the group, and pgid > 1 rules out the special meanings of 0/-1.
    if unsafe { libc::kill(-pgid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use tempfile::TempDir;

    const QUICK: Ladder = Ladder {
        interrupt: Duration::from_millis(200),
        terminate: Duration::from_millis(200),
    };

    /// Upper bound used only as a sanity check, never as a timing assertion.
    const SANITY: Duration = Duration::from_secs(10);

    struct Fixture {
        dir: TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Run `body` with /bin/sh; the script file itself is never
        /// executed, which sidesteps ETXTBSY races with parallel tests.
        fn spec(&self, body: &str) -> RunSpec {
            let script = self.path("script.sh");
            fs::write(&script, body).unwrap();
            RunSpec {
                argv: vec!["/bin/sh".into(), script.display().to_string()],
                cwd: self.dir.path().to_path_buf(),
                env: vec![("FIXTURE".into(), self.dir.path().display().to_string())],
                stdout: self.path("logs/stdout.log"),
                stderr: self.path("logs/stderr.log"),
            }
        }

        fn read(&self, name: &str) -> String {
            fs::read_to_string(self.path(name)).unwrap()
        }

        async fn wait_for(&self, name: &str) {
            let path = self.path(name);
            let give_up = Instant::now() + SANITY;
            while !path.exists() {
                assert!(Instant::now() < give_up, "{name} never appeared");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    fn no_stop() -> watch::Receiver<Option<StopReason>> {
        watch::channel(None).1
    }

    async fn run(spec: &RunSpec, timeout: Option<Duration>) -> Outcome {
        spawn(spec).unwrap().supervise(timeout, QUICK, no_stop()).await
    }

    /// Zombies still answer `kill(pid, 0)` until whoever inherited them reaps
    /// them, which on some systems takes a while; a zombie runs nothing, so
    /// it counts as gone.
    #[cfg(target_os = "linux")]
    fn zombie_or_missing(pid: i32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
            Err(_) => true,
        }
    }

    #[cfg(target_os = "linux")]
    fn live_members(pgid: i32) -> bool {
        let Ok(entries) = fs::read_dir("/proc") else {
            return true;
        };
        entries.flatten().any(|entry| {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                return false;
            };
            // SAFETY: getpgid only reads its argument.
            let member = unsafe { libc::getpgid(pid) } == pgid;
            member && !zombie_or_missing(pid)
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn live_members(_pgid: i32) -> bool {
        true
    }

    fn process_gone(pid: i32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        let missing = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        #[cfg(target_os = "linux")]
        let missing = missing || zombie_or_missing(pid);
        missing
    }

    fn group_gone(pgid: u32) -> bool {
        let pgid = pgid as i32;
        // SAFETY: signal 0 only checks for existence.
        let missing = unsafe { libc::kill(-pgid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        missing || !live_members(pgid)
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let give_up = Instant::now() + SANITY;
        while !check() {
            assert!(Instant::now() < give_up, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn exit_zero() {
        let fx = Fixture::new();
        let out = run(&fx.spec("exit 0\n"), None).await;
        assert_eq!(out.ending, Ending::Exited);
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(out.signal, None);
        assert!(out.duration < SANITY);
    }

    #[tokio::test]
    async fn exit_three() {
        let fx = Fixture::new();
        let out = run(&fx.spec("exit 3\n"), Some(SANITY)).await;
        assert_eq!(out.ending, Ending::Exited);
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.signal, None);
    }

    #[tokio::test]
    async fn output_is_appended_to_files() {
        let fx = Fixture::new();
        fs::create_dir_all(fx.path("logs")).unwrap();
        fs::write(fx.path("logs/stdout.log"), "earlier attempt\n").unwrap();
        let spec = fx.spec("echo to-out; echo to-err >&2; read line; echo \"stdin:$line.\"\n");
        let out = run(&spec, None).await;
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(fx.read("logs/stdout.log"), "earlier attempt\nto-out\nstdin:.\n");
        assert_eq!(fx.read("logs/stderr.log"), "to-err\n");
    }

    #[tokio::test]
    async fn output_is_streamed_while_running() {
        let fx = Fixture::new();
        let spec = fx.spec("echo early; : > started; exec sleep 1000\n");
        let running = spawn(&spec).unwrap();
        fx.wait_for("started").await;
        assert_eq!(fx.read("logs/stdout.log"), "early\n");
        let (tx, rx) = watch::channel(Some(StopReason::Cancel));
        let out = running.supervise(None, QUICK, rx).await;
        drop(tx);
        assert_eq!(out.ending, Ending::Stopped(StopReason::Cancel));
    }

    #[tokio::test]
    async fn timeout_stops_child_that_obeys_sigint() {
        let fx = Fixture::new();
        let patient = Ladder {
            interrupt: Duration::from_secs(30),
            terminate: Duration::from_secs(30),
        };
        let running = spawn(&fx.spec("exec sleep 1000\n")).unwrap();
        let out = running
            .supervise(Some(Duration::from_millis(100)), patient, no_stop())
            .await;
        assert_eq!(out.ending, Ending::TimedOut);
        assert_eq!(out.signal, Some(libc::SIGINT));
        assert_eq!(out.exit_code, None);
        // Far below the 30 s interrupt grace: the ladder stopped early.
        assert!(out.duration < Duration::from_secs(20), "{:?}", out.duration);
    }

    #[tokio::test]
    async fn child_ignoring_int_and_term_is_killed() {
        let fx = Fixture::new();
        let spec = fx.spec("trap '' INT TERM\n: > ready\nexec sleep 1000\n");
        let running = spawn(&spec).unwrap();
        // The deadline counts from spawn, so once the traps are in place it
        // has already passed and the ladder starts immediately.
        fx.wait_for("ready").await;
        let pid = running.pid;
        let out = running
            .supervise(Some(Duration::from_millis(1)), QUICK, no_stop())
            .await;
        assert_eq!(out.ending, Ending::TimedOut);
        assert_eq!(out.signal, Some(libc::SIGKILL));
        assert!(out.duration < SANITY);
        eventually("group survived", || group_gone(pid)).await;
    }

    #[tokio::test]
    async fn grandchild_of_int_ignoring_child_is_cleaned_up() {
        let fx = Fixture::new();
        let spec = fx.spec("trap '' INT\nsleep 1000 &\necho $! > grandchild.pid\n: > ready\nwait\n");
        let running = spawn(&spec).unwrap();
        fx.wait_for("ready").await;
        let pgid = running.pid;
        let grandchild: i32 = fx.read("grandchild.pid").trim().parse().unwrap();
        // SAFETY: getpgid only reads its argument.
        assert_eq!(unsafe { libc::getpgid(grandchild) }, pgid as i32);
        let out = running
            .supervise(Some(Duration::from_millis(1)), QUICK, no_stop())
            .await;
        assert_eq!(out.ending, Ending::TimedOut);
        assert!(out.duration < SANITY);
        eventually("group survived", || group_gone(pgid)).await;
        eventually("grandchild survived", || process_gone(grandchild)).await;
    }

    #[tokio::test]
    async fn grandchild_outliving_a_clean_exit_is_killed() {
        let fx = Fixture::new();
        // The grandchild ignores every catchable signal the ladder would
        // send, and the leader exits on its own: only the final group
        // SIGKILL can end it.
        let spec = fx.spec("trap '' INT TERM\nsleep 1000 &\necho $! > grandchild.pid\nexit 0\n");
        let running = spawn(&spec).unwrap();
        let pgid = running.pid;
        let out = running.supervise(None, QUICK, no_stop()).await;
        assert_eq!(out.ending, Ending::Exited);
        assert_eq!(out.exit_code, Some(0));
        let grandchild: i32 = fx.read("grandchild.pid").trim().parse().unwrap();
        eventually("group survived", || group_gone(pgid)).await;
        eventually("grandchild survived", || process_gone(grandchild)).await;
    }

    #[tokio::test]
    async fn cancel_through_watch_channel() {
        let fx = Fixture::new();
        let running = spawn(&fx.spec(": > ready\nexec sleep 1000\n")).unwrap();
        let (tx, rx) = watch::channel(None);
        let stopper = async {
            fx.wait_for("ready").await;
            tx.send(Some(StopReason::Cancel)).unwrap();
        };
        let (out, ()) = tokio::join!(running.supervise(Some(SANITY * 6), QUICK, rx), stopper);
        assert_eq!(out.ending, Ending::Stopped(StopReason::Cancel));
        assert_eq!(out.signal, Some(libc::SIGINT));
    }

    #[tokio::test]
    async fn shutdown_already_requested_stops_at_once() {
        let fx = Fixture::new();
        let running = spawn(&fx.spec("exec sleep 1000\n")).unwrap();
        let (tx, rx) = watch::channel(None);
        tx.send(Some(StopReason::Shutdown)).unwrap();
        let out = running.supervise(None, QUICK, rx).await;
        assert_eq!(out.ending, Ending::Stopped(StopReason::Shutdown));
        assert!(out.duration < SANITY);
    }

    #[tokio::test]
    async fn dropped_stop_sender_lets_the_child_finish() {
        let fx = Fixture::new();
        let running = spawn(&fx.spec("sleep 0.2; exit 5\n")).unwrap();
        let (tx, rx) = watch::channel(None);
        drop(tx);
        let out = running.supervise(None, QUICK, rx).await;
        assert_eq!(out.ending, Ending::Exited);
        assert_eq!(out.exit_code, Some(5));
    }

    #[tokio::test]
    async fn dropping_running_kills_the_group() {
        let fx = Fixture::new();
        let running = spawn(&fx.spec("trap '' INT TERM\nexec sleep 1000\n")).unwrap();
        let pgid = running.pid;
        drop(running);
        eventually("group survived", || group_gone(pgid)).await;
    }

    #[tokio::test]
    async fn missing_program_error_names_it_and_cwd() {
        let fx = Fixture::new();
        let mut spec = fx.spec("");
        spec.argv = vec!["agentplane-no-such-program-xyz".into(), "arg".into()];
        let err = spawn(&spec).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(text.contains("agentplane-no-such-program-xyz"), "{text}");
        assert!(text.contains(&fx.dir.path().display().to_string()), "{text}");
    }

    #[tokio::test]
    async fn empty_argv_is_rejected() {
        let fx = Fixture::new();
        let mut spec = fx.spec("");
        spec.argv.clear();
        let err = spawn(&spec).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn env_and_cwd_are_applied() {
        let fx = Fixture::new();
        let mut spec = fx.spec("pwd -P; echo \"v=$AGENTPLANE_VAR\"; echo \"path=${PATH:+set}\"\n");
        spec.env.push(("AGENTPLANE_VAR".into(), "a b; $(c)".into()));
        let out = run(&spec, None).await;
        assert_eq!(out.exit_code, Some(0));
        let cwd = fs::canonicalize(fx.dir.path()).unwrap();
        assert_eq!(
            fx.read("logs/stdout.log"),
            format!("{}\nv=a b; $(c)\npath=set\n", cwd.display())
        );
    }

    #[tokio::test]
    async fn relative_program_resolves_against_cwd() {
        use std::os::unix::fs::PermissionsExt;
        let fx = Fixture::new();
        let mut spec = fx.spec("");
        let tool = fx.path("bin/tool");
        fs::create_dir_all(fx.path("bin")).unwrap();
        fs::write(&tool, "#!/bin/sh\necho \"tool $1\"\n").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        spec.argv = vec!["./bin/tool".into(), "ran".into()];
        let give_up = Instant::now() + SANITY;
        let running = loop {
            match spawn(&spec) {
                // A parallel test may fork while our write handle is still
                // open in its child, briefly making the file busy.
                Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                    assert!(Instant::now() < give_up, "{e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other.unwrap(),
            }
        };
        let out = running.supervise(None, QUICK, no_stop()).await;
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(fx.read("logs/stdout.log"), "tool ran\n");
    }

    #[test]
    fn kill_orphan_group_kills_a_live_group_only() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        assert!(kill_orphan_group(child.id()));
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(!kill_orphan_group(child.id()));
    }

    #[test]
    fn kill_orphan_group_refuses_special_groups() {
        assert!(!kill_orphan_group(0));
        assert!(!kill_orphan_group(1));
        assert!(!kill_orphan_group(u32::MAX));
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        assert!(!kill_orphan_group(own as u32));
    }
}
