//! `agentplane-bench`: measures the control plane against the targets of issue 5 by driving the
//! real daemon binary in scratch roots it builds itself, and prints every figure next to a
//! baseline measured in the same run on the same disk, with the ratio. Numbers, never asserts.
//!
//! ```sh
//! cargo run --release --bin agentplane-bench                  # every figure (~10–15 min)
//! cargo run --release --bin agentplane-bench -- --quick       # smoke sizes, seconds
//! cargo run --release --bin agentplane-bench -- intake latency --keep --dir /var/tmp
//! ```
//!
//! Figures (`Figure`): `intake`, `e2e`, `latency`, `startup`, `idle`, `growth`, `rebuild`,
//! `queries`. The daemon is `agentplane` next to this program (brought up to date first when
//! run through cargo) unless `--daemon PATH` names one; it runs as a child process,
//! `agentplane --root R daemon`, and is stopped with SIGTERM. The query-path figures run the
//! same binary as the CLI (`index rebuild`, `status --json`, `list --status assigned`).
//! Scratch roots go under `--dir` (default: the temp dir), whose filesystem decides what an
//! fsync costs; it is printed with the machine. The last lines are a Markdown table for
//! docs/benchmarks.md.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime};

use agentplane::clock;
use agentplane::command::intake::parse_mapping;
use agentplane::command::state::task_meta;
use agentplane::event::{self, Event};
use agentplane::lifecycle::fsops;
use agentplane::store::index::read::{IndexError, Reader, TaskFilter};
use agentplane::task::Task;
use agentplane::watch::inotify::Inotify;
use clap::{Parser, ValueEnum};
use serde_json::{Map, Value, json};

#[derive(Parser)]
#[command(
    name = "agentplane-bench",
    about = "Measure agentplane against its targets, each figure with a baseline from the same run"
)]
struct Args {
    /// Smoke sizes (seconds); the numbers are not comparable with the targets
    #[arg(long)]
    quick: bool,
    /// The daemon binary (default: `agentplane` next to this program)
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Where the scratch roots are made (default: the temp dir)
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the scratch roots afterwards (for perf / strace)
    #[arg(long)]
    keep: bool,
    /// Skip the pueue comparison of `e2e` even when pueue is installed
    #[arg(long)]
    no_pueue: bool,
    /// Figures to measure (default: all)
    #[arg(value_enum)]
    figures: Vec<Figure>,
}

/// The figures of issue 5.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Figure {
    /// 10,000 task files renamed into inbox/ at once → all in assigned/, events durable
    Intake,
    /// 1,000 tasks of an agent whose command is `true`, max_concurrent 4 (and pueue, if installed)
    E2e,
    /// One task dropped into an idle daemon: drop → assigned, drop → child started
    Latency,
    /// 100,000 task files + 1,000,000 events → READY logged
    Startup,
    /// The daemon idle 60 s with 100,000 tasks: CPU seconds and RSS
    Idle,
    /// Intake throughput with 100,000 tasks present ÷ with none
    Growth,
    /// `agentplane index rebuild` of the large root's 1,000,000 events, its daemon stopped
    Rebuild,
    /// `status --json` and `list --status assigned` with 100,000 tasks, the daemon idle
    Queries,
}

const ALL: [Figure; 8] = [
    Figure::Intake,
    Figure::E2e,
    Figure::Latency,
    Figure::Startup,
    Figure::Idle,
    Figure::Growth,
    Figure::Rebuild,
    Figure::Queries,
];

/// The figures measured on the large root that `big_root` generates.
const BIG: [Figure; 5] = [
    Figure::Startup,
    Figure::Idle,
    Figure::Growth,
    Figure::Rebuild,
    Figure::Queries,
];

/// Inbox files per committed batch in the daemon (`command::intake`); the baselines batch alike.
const BATCH: usize = 2000;
/// Threads that fdatasync a batch's files at once in the group-commit reference.
const SYNC_THREADS: usize = 16;

struct Sizes {
    intake: usize,
    e2e: usize,
    latency: usize,
    big_tasks: usize,
    /// Runs of each query (and of each of its baselines).
    queries: usize,
    idle: Duration,
    /// Longest wait for one drop of tasks to get through before the figure is cut off.
    drop_timeout: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                intake: 100,
                e2e: 20,
                latency: 10,
                big_tasks: 500,
                queries: 5,
                idle: Duration::from_secs(1),
                drop_timeout: Duration::from_secs(60),
            }
        } else {
            Sizes {
                intake: 10_000,
                e2e: 1_000,
                latency: 1_000,
                big_tasks: 100_000,
                queries: 20,
                idle: Duration::from_secs(60),
                drop_timeout: Duration::from_secs(300),
            }
        }
    }
}

type Res<T> = Result<T, String>;

fn io(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// One indented detail line: a label column, then the text.
fn say(label: &str, text: impl std::fmt::Display) {
    println!("  {label:<28}{text}");
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("agentplane-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Res<()> {
    let daemon = match &args.daemon {
        Some(p) => p.clone(),
        None => default_daemon()?,
    };
    if !daemon.is_file() {
        return Err(format!(
            "no daemon binary at {}; run `cargo build --release` or pass --daemon PATH",
            daemon.display()
        ));
    }
    let scratch = Scratch::new(&args.dir.clone().unwrap_or_else(std::env::temp_dir), args.keep)?;
    let figures: Vec<Figure> = if args.figures.is_empty() {
        ALL.to_vec()
    } else {
        ALL.into_iter().filter(|f| args.figures.contains(f)).collect()
    };
    print_machine(&daemon, &scratch.path, args.quick);
    let mut bench = Bench {
        daemon,
        sizes: Sizes::new(args.quick),
        scratch,
        pueue: if args.no_pueue { None } else { find_pueue() },
        rows: Vec::new(),
        empty_intake: None,
    };
    let started = Instant::now();
    let cpu = CpuTimes::now();
    bench.run(&figures)?;
    bench.print_summary();
    println!(
        "\nload average at the end: {} (run took {:.0} s; {})",
        load_average(),
        started.elapsed().as_secs_f64(),
        cpu.stolen_since()
    );
    Ok(())
}

/// `agentplane` next to this program; when run through cargo, bring it up to date first so a
/// stale daemon is never measured.
fn default_daemon() -> Res<PathBuf> {
    let me = std::env::current_exe().map_err(io("cannot locate this program"))?;
    if let Some(cargo) = std::env::var_os("CARGO") {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--bin", "agentplane", "--manifest-path"])
            .arg(&manifest);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(io("cannot run cargo build"))?;
        if !status.success() {
            return Err(format!("cargo build of the daemon failed ({status})"));
        }
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for meaningful numbers");
    }
    Ok(me.with_file_name("agentplane"))
}

fn find_pueue() -> Option<(PathBuf, PathBuf)> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().find_map(|d| {
        let (client, daemon) = (d.join("pueue"), d.join("pueued"));
        (client.is_file() && daemon.is_file()).then_some((client, daemon))
    })
}

// ---------------------------------------------------------------------------------------------
// The machine

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The machine's CPU time so far, from the first line of `/proc/stat`: on a shared VM the
/// hypervisor's steal (time a virtual CPU wanted to run and could not) moves every figure.
struct CpuTimes {
    steal: u64,
    total: u64,
}

impl CpuTimes {
    fn now() -> CpuTimes {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        // user nice system idle iowait irq softirq steal (guest time is inside user already)
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|t| t.parse().ok())
            .collect();
        CpuTimes {
            steal: ticks.get(7).copied().unwrap_or(0),
            total: ticks.iter().sum(),
        }
    }

    /// "N % of the CPU time stolen by the hypervisor" since this snapshot.
    fn stolen_since(&self) -> String {
        let now = CpuTimes::now();
        let total = now.total.saturating_sub(self.total).max(1);
        let steal = now.steal.saturating_sub(self.steal);
        format!(
            "{:.0} % of the CPU time stolen by the hypervisor",
            100.0 * steal as f64 / total as f64
        )
    }
}

/// Type, device and options of the mount holding `dir` (the longest mount-point prefix).
fn filesystem_of(dir: &Path) -> String {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && dir.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} {} ({})", f[2], f[0], f[3])))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, d)| d)
}

fn print_machine(daemon: &Path, scratch: &Path, quick: bool) {
    let output = |cmd: &mut Command| {
        cmd.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = first_line_with("/proc/meminfo", "MemTotal").unwrap_or_default();
    let version = output(Command::new(daemon).arg("--version"));
    let commit =
        output(Command::new("git").args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]));
    let load = load_average();
    println!(
        "agentplane-bench{}",
        if quick {
            " --quick (smoke sizes, not comparable)"
        } else {
            ""
        }
    );
    say("date", clock::rfc3339_seconds(SystemTime::now()));
    say("cpu", format!("{cpu}, {cores} cores"));
    say("memory", mem);
    say("kernel", kernel.trim());
    say(
        "scratch",
        format!("{} on {}", scratch.display(), filesystem_of(scratch)),
    );
    say(
        "daemon",
        format!("{} ({version}, commit {commit})", daemon.display()),
    );
    say("load average", &load);
    if load
        .split(' ')
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .is_some_and(|l| l > 0.5)
    {
        say(
            "",
            "warning: the machine is busy; fsync-bound figures will be noisy",
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// Scratch space, task files, /proc

/// The scratch directory of one run, removed at the end unless `--keep`.
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    fn new(base: &Path, keep: bool) -> Res<Scratch> {
        let path = base.join(format!("agentplane-bench-{}", std::process::id()));
        fs::create_dir_all(&path).map_err(io(path.display()))?;
        let path = path.canonicalize().map_err(io(path.display()))?;
        Ok(Scratch { path, keep })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            println!("scratch roots kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A new task as a submitting agent writes it into the inbox.
fn task_text(id: &str, agent: &str, n: usize) -> String {
    format!(
        "id: {id}\nagent: {agent}\ntitle: Benchmark task {n}\npriority: normal\nartefacts: []\n\
         description: |\n  A task written by agentplane-bench to measure the control plane.\n"
    )
}

/// The folders and files of an intake reference (`Bench::intake_scratch`).
struct IntakeScratch {
    root: PathBuf,
    staged: PathBuf,
    inbox: PathBuf,
    dest: PathBuf,
    /// Where a reference puts the inbox files it is done with, as the daemon does: freeing
    /// them would slow every later figure's file creations (ext4 without a journal skips
    /// recently freed inodes), so they are freed with the scratch directory at the end.
    trash: PathBuf,
    names: Vec<String>,
}

/// Write `n` task files `<prefix>-NNNNNN.yaml` into `dir`; returns their names.
fn stage(dir: &Path, prefix: &str, agent: &str, n: usize) -> Res<Vec<String>> {
    fs::create_dir_all(dir).map_err(io(dir.display()))?;
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i:06}");
            let name = format!("{id}.yaml");
            fs::write(dir.join(&name), task_text(&id, agent, i)).map_err(io(&name))?;
            Ok(name)
        })
        .collect()
}

fn rename_all(from: &Path, to: &Path, names: &[String]) -> Res<()> {
    for name in names {
        fs::rename(from.join(name), to.join(name)).map_err(io(from.join(name).display()))?;
    }
    Ok(())
}

/// Take `dir/name` out of `dir` without freeing it (see `IntakeScratch::trash`).
fn set_aside(dir: &Path, name: &str, trash: &Path) -> Res<()> {
    fs::rename(dir.join(name), trash.join(name)).map_err(io(dir.join(name).display()))
}

fn mkdirs(dirs: &[&Path]) -> Res<()> {
    dirs.iter()
        .try_for_each(|d| fs::create_dir_all(d).map_err(io(d.display())))
}

/// Parse and validate a task the way intake does (budgeted YAML parser, then `Task`).
fn parse_task(text: &str) -> Res<Task> {
    parse_mapping(text)
        .map_err(|r| r.reason)
        .and_then(|doc| Task::from_doc(doc).map_err(|i| i.reason))
}

/// Read and validate a task file the way intake does.
fn read_task(path: &Path) -> Res<(String, Task)> {
    let text = fs::read_to_string(path).map_err(io(path.display()))?;
    let task = parse_task(&text)?;
    Ok((text, task))
}

/// One log line for a task, encoded as the journal encodes events (CRC included).
fn event_line(seq: u64, task: &Task, path: &str) -> String {
    let mut ev = Event::task("task_assigned", task.id.as_deref().unwrap_or_default());
    ev.seq = seq;
    ev.agent = Some(task.agent.clone());
    ev.path = Some(path.to_string());
    format!("{}\n", event::encode(&ev))
}

/// Read and validate a batch of inbox files the way intake does, append one event line each
/// to the log in one write, and fdatasync it. Returns the files' texts.
fn log_batch(log: &mut File, inbox: &Path, names: &[String], seq: &mut u64) -> Res<Vec<String>> {
    let mut buf = String::new();
    let mut texts = Vec::with_capacity(names.len());
    for name in names {
        let (text, task) = read_task(&inbox.join(name))?;
        *seq += 1;
        buf.push_str(&event_line(*seq, &task, name));
        texts.push(text);
    }
    log.write_all(buf.as_bytes()).map_err(io("reference log"))?;
    log.sync_data().map_err(io("reference log fsync"))?;
    Ok(texts)
}

fn append_log(dir: &Path) -> Res<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("events.jsonl"))
        .map_err(io("cannot open a baseline log"))
}

fn is_yaml(name: &[u8]) -> bool {
    !name.starts_with(b".") && (name.ends_with(b".yaml") || name.ends_with(b".yml"))
}

/// Task files in `dir` (0 if it does not exist).
fn yaml_count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| is_yaml(e.file_name().as_bytes()))
            .count()
    })
}

/// Whether `dir` still holds a task file; stops at the first, so it is cheap to poll.
fn any_yaml(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut rd| rd.any(|e| e.is_ok_and(|e| is_yaml(e.file_name().as_bytes()))))
}

fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
    // After the command name, field 3 (state) is index 0: utime (14) and stime (15) follow.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// A `kB` line of /proc/<pid>/status (VmRSS, VmHWM), in MiB.
fn status_mib(pid: u32, key: &str) -> f64 {
    first_line_with(&format!("/proc/{pid}/status"), key)
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn fmt_rate(r: f64) -> String {
    format!("{r:.0}/s")
}

/// `what: 1.230 s = 8130/s` for `n` items done in `secs`.
fn rate_line(what: &str, n: usize, secs: f64) -> String {
    format!("{what}: {secs:.3} s = {}", fmt_rate(n as f64 / secs))
}

/// How a rate compares with another, in the direction that reads: `1.6× slower`, `3.2× faster`.
fn compared(rate: f64, other: f64) -> String {
    if rate < other {
        format!("{:.1}× slower", other / rate)
    } else {
        format!("{:.1}× faster", rate / other)
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon under test

/// A running `agentplane --root R daemon`; a thread reads its stderr (JSON log lines).
struct Daemon {
    child: Child,
    lines: Receiver<(Instant, String)>,
    spawned: Instant,
    /// WARN and ERROR lines seen so far.
    warnings: Vec<String>,
}

/// What the READY line said, and when it came.
struct Ready {
    after: Duration,
    tasks: u64,
    seq: u64,
    ms: u64,
}

impl Daemon {
    fn start(bin: &Path, root: &Path) -> Res<Daemon> {
        let spawned = Instant::now();
        let mut child = Command::new(bin)
            .arg("--root")
            .arg(root)
            .args(["--log-format", "json", "daemon"])
            .env("AGENTPLANE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("cannot start {}", bin.display())))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Daemon {
            child,
            lines,
            spawned,
            warnings: Vec::new(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn note(&mut self, line: &str) -> Option<Value> {
        let v: Value = serde_json::from_str(line).ok()?;
        if matches!(v["level"].as_str(), Some("WARN" | "ERROR")) {
            self.warnings.push(line.to_string());
        }
        Some(v)
    }

    /// Wait for the READY line.
    fn ready(&mut self, timeout: Duration) -> Res<Ready> {
        let deadline = self.spawned + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((at, line)) = self.lines.recv_timeout(left) else {
                let status = self.child.try_wait().ok().flatten();
                return Err(format!(
                    "the daemon did not log READY within {timeout:?} (exit: {status:?}; warnings: {:?})",
                    self.warnings.iter().rev().take(3).collect::<Vec<_>>()
                ));
            };
            let Some(v) = self.note(&line) else { continue };
            if v["fields"]["message"] == "READY" {
                let num = |k: &str| v["fields"][k].as_u64().unwrap_or(0);
                return Ok(Ready {
                    after: at - self.spawned,
                    tasks: num("tasks"),
                    seq: num("seq"),
                    ms: num("ms"),
                });
            }
        }
    }

    /// Take the log lines that arrived so far (to collect warnings).
    fn drain(&mut self) {
        while let Ok((_, line)) = self.lines.try_recv() {
            self.note(&line);
        }
    }

    /// SIGTERM, wait for a clean exit; returns how long that took and the warnings logged.
    fn stop(mut self) -> Res<(Duration, Vec<String>)> {
        let t0 = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => return Err(format!("the daemon exited with {status}")),
                Ok(None) if t0.elapsed() > Duration::from_secs(900) => {
                    return Err("the daemon did not stop within 900 s of SIGTERM".into());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("waiting for the daemon: {e}")),
            }
        }
        let took = t0.elapsed();
        // The reader thread ends at EOF; take what it read.
        while let Ok((_, line)) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.note(&line);
        }
        Ok((took, std::mem::take(&mut self.warnings)))
    }

    /// Stop, and mention the warnings it logged, if any.
    fn finish(self, what: &str) -> Res<Duration> {
        let (took, warnings) = self.stop()?;
        if let Some(first) = warnings.first() {
            say(
                "note",
                format!("{what} logged {} warning(s), first: {first}", warnings.len()),
            );
        }
        Ok(took)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `agentplane init ROOT` with the real binary, then this `agentplane.yaml`.
fn init_root(bin: &Path, root: &Path, config: &str) -> Res<()> {
    let out = Command::new(bin)
        .arg("init")
        .arg(root)
        .output()
        .map_err(io("cannot run agentplane init"))?;
    if !out.status.success() {
        return Err(format!(
            "agentplane init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    fs::write(root.join("agentplane.yaml"), config).map_err(io("cannot write agentplane.yaml"))
}

fn collab(root: &Path, rel: &str) -> PathBuf {
    root.join("work/collaboration").join(rel)
}

fn events_path(root: &Path) -> PathBuf {
    root.join("work/.agentplane/events.jsonl")
}

fn log_len(root: &Path) -> u64 {
    fs::metadata(events_path(root)).map_or(0, |m| m.len())
}

/// Events appended to a root's log from byte `offset` on, each verified (CRC) and decoded.
fn events_since(root: &Path, offset: u64) -> Res<Vec<Event>> {
    let mut file = File::open(events_path(root)).map_err(io("cannot open the event log"))?;
    file.seek(io::SeekFrom::Start(offset))
        .map_err(io("cannot seek in the event log"))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(io("cannot read the event log"))?;
    text.lines()
        .map(|l| event::decode(l).map_err(|e| format!("event log line after byte {offset}: {e}")))
        .collect()
}

/// One drop of task files into a running daemon's inbox, and how long until it was through.
struct DropRun {
    secs: f64,
    /// Files that reached the destination folder by the end (or the time-out).
    reached: usize,
    timed_out: bool,
    /// Daemon CPU seconds (user + system) spent meanwhile.
    cpu: f64,
}

impl DropRun {
    fn rate(&self) -> f64 {
        self.reached as f64 / self.secs
    }

    fn describe(&self) -> String {
        format!(
            "{} tasks in {:.2} s = {} (daemon CPU {:.2} s = {:.0} µs/task){}",
            self.reached,
            self.secs,
            fmt_rate(self.rate()),
            self.cpu,
            self.cpu * 1e6 / self.reached.max(1) as f64,
            if self.timed_out {
                " — TIMED OUT, rate of what got through"
            } else {
                ""
            }
        )
    }
}

/// Rename the staged `names` into the inbox at once; wait until the inbox holds no task file
/// and `dest` holds `already` + all of them. A file is in `dest` only after its events were
/// fsynced.
fn timed_drop(
    d: &Daemon,
    root: &Path,
    names: &[String],
    dest: &Path,
    already: usize,
    timeout: Duration,
) -> Res<DropRun> {
    let inbox = collab(root, "inbox");
    // Progress is counted from inotify events, not by listing the folders: listing 10,000
    // entries every few milliseconds took a core and the folders' locks from the daemon.
    let mut ino = inotify()?;
    mkdirs(&[dest])?;
    let wd_dest = watch(&ino, dest, libc::IN_MOVED_TO)?;
    let wd_inbox = watch(&ino, &inbox, libc::IN_MOVED_FROM | libc::IN_DELETE)?;
    let expected: HashSet<&str> = names.iter().map(String::as_str).collect();
    let (mut arrived, mut left) = (HashSet::new(), HashSet::new());
    sync_disks();
    let cpu0 = cpu_seconds(d.pid());
    let t0 = Instant::now();
    rename_all(&root.join("stage"), &inbox, names)?;
    let (mut timed_out, mut overflowed) = (false, false);
    let mut checked_at = Instant::now();
    loop {
        let counted = arrived.len() == names.len() && left.len() == names.len();
        // The listing confirms what the events say; it also runs now and then, in case
        // events were lost (a full inotify queue reports an overflow, watch -1).
        if counted || overflowed || checked_at.elapsed() > Duration::from_secs(1) {
            checked_at = Instant::now();
            if !any_yaml(&inbox) && yaml_count(dest) >= already + names.len() {
                break;
            }
        }
        if t0.elapsed() > timeout {
            timed_out = true;
            break;
        }
        if overflowed {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // Let events gather: waking for each one would take the daemon's cores as well.
        std::thread::sleep(Duration::from_millis(5));
        for (wd, name) in events(&mut ino, Duration::from_millis(100))? {
            let Some(name) = expected.get(name.as_str()).copied() else {
                overflowed |= wd == -1;
                continue;
            };
            if wd == wd_dest {
                arrived.insert(name);
            } else if wd == wd_inbox {
                left.insert(name);
            }
        }
    }
    Ok(DropRun {
        secs: t0.elapsed().as_secs_f64(),
        reached: yaml_count(dest).saturating_sub(already),
        timed_out,
        cpu: cpu_seconds(d.pid()) - cpu0,
    })
}

/// After a drop: one verified `task_assigned` per file in the log, nothing rejected.
fn check_assigned(root: &Path, offset: u64, run: &DropRun, n: usize) -> Res<()> {
    let events = events_since(root, offset)?;
    let count = |name: &str| events.iter().filter(|e| e.event == name).count();
    let (assigned, rejected) = (count("task_assigned"), count("task_rejected"));
    if !run.timed_out && (assigned != n || rejected != 0) {
        return Err(format!(
            "intake check failed: {assigned} task_assigned and {rejected} task_rejected events for {n} files"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(PartialEq)]
enum Verdict {
    Met,
    Missed,
    Info,
}

fn verdict(met: bool) -> Verdict {
    if met { Verdict::Met } else { Verdict::Missed }
}

struct Row {
    figure: String,
    target: String,
    measured: String,
    baseline: String,
    ratio: String,
    verdict: Verdict,
}

struct Bench {
    daemon: PathBuf,
    sizes: Sizes,
    scratch: Scratch,
    pueue: Option<(PathBuf, PathBuf)>,
    rows: Vec<Row>,
    /// Intake into an empty root, measured once per run (for `intake` and `growth`).
    empty_intake: Option<DropRun>,
}

impl Bench {
    fn run(&mut self, figures: &[Figure]) -> Res<()> {
        for f in figures {
            let cpu = CpuTimes::now();
            match f {
                Figure::Intake => self.fig_intake()?,
                Figure::E2e => self.fig_e2e()?,
                Figure::Latency => self.fig_latency()?,
                // Measured together on one large root, below.
                Figure::Startup | Figure::Idle | Figure::Growth | Figure::Rebuild | Figure::Queries => {
                    continue;
                }
            }
            say("steal", cpu.stolen_since());
        }
        if figures.iter().any(|f| BIG.contains(f)) {
            let cpu = CpuTimes::now();
            self.big_root(figures)?;
            say("steal", cpu.stolen_since());
        }
        Ok(())
    }

    fn root(&self, name: &str) -> PathBuf {
        self.scratch.path.join(name)
    }

    fn row(
        &mut self,
        figure: &str,
        target: &str,
        measured: String,
        baseline: String,
        ratio: String,
        v: Verdict,
    ) {
        self.rows.push(Row {
            figure: figure.into(),
            target: target.into(),
            measured,
            baseline,
            ratio,
            verdict: v,
        });
    }

    /// A row that compares a rate with a reference or a peer measured in the same run.
    fn reference_row(&mut self, figure: &str, rate: f64, other: f64, other_what: &str) {
        self.row(
            figure,
            "(reference)",
            fmt_rate(rate),
            format!("{} {other_what}", fmt_rate(other)),
            compared(rate, other),
            Verdict::Info,
        );
    }

    fn print_summary(&self) {
        println!();
        println!("| figure | target | measured | baseline (same run) | ratio | |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for r in &self.rows {
            let v = match r.verdict {
                Verdict::Met => "met",
                Verdict::Missed => "**missed**",
                Verdict::Info => "",
            };
            println!(
                "| {} | {} | {} | {} | {} | {v} |",
                r.figure, r.target, r.measured, r.baseline, r.ratio
            );
        }
    }

    /// A new root with this config and a running daemon; `n` staged tasks renamed into its
    /// inbox at once, timed until `until` (a folder under `work/collaboration/`) holds them
    /// all; the daemon stopped. Returns the run and the log's length before the drop.
    fn drop_into_new_root(
        &self,
        root: &Path,
        config: &str,
        prefix: &str,
        n: usize,
        until: &str,
    ) -> Res<(DropRun, u64)> {
        init_root(&self.daemon, root, config)?;
        let names = stage(&root.join("stage"), prefix, "bench", n)?;
        let mut d = Daemon::start(&self.daemon, root)?;
        d.ready(Duration::from_secs(60))?;
        let offset = log_len(root);
        let run = timed_drop(&d, root, &names, &collab(root, until), 0, self.sizes.drop_timeout)?;
        d.finish("the daemon")?;
        Ok((run, offset))
    }

    /// Intake into an empty root with no agents configured: the files are renamed into the
    /// inbox of a running daemon at once.
    fn intake_empty(&mut self) -> Res<()> {
        let n = self.sizes.intake;
        let root = self.root("intake");
        let config = "# agentplane-bench: defaults, no agents listed\n";
        let (run, offset) = self.drop_into_new_root(&root, config, "new", n, "assigned/bench")?;
        check_assigned(&root, offset, &run, n)?;
        say("daemon, empty root", run.describe());
        self.empty_intake = Some(run);
        Ok(())
    }

    // -- intake -----------------------------------------------------------------------------

    fn fig_intake(&mut self) -> Res<()> {
        let n = self.sizes.intake;
        println!("intake throughput: {n} task files renamed into inbox/ at once → assigned/, events durable");
        let base = self.intake_baseline(n)?;
        say(
            "baseline",
            rate_line(
                &format!("parse + rename + batched fsync (log, both dirs, per {BATCH})"),
                n,
                base,
            ),
        );
        let group = self.group_commit_reference(n)?;
        say(
            "reference: group commit",
            rate_line(
                &format!("parse + log + rewrite, {SYNC_THREADS} threads fdatasync, dir fsyncs per {BATCH}"),
                n,
                group,
            ),
        );
        let inplace = self.in_place_reference(n)?;
        say(
            "reference: in place",
            rate_line(
                "parse + log + rename, rewrite in place, syncfs per batch",
                n,
                inplace,
            ),
        );
        let floor = self.per_file_reference(n)?;
        say(
            "reference: per-file fsync",
            rate_line("the daemon's per-move protocol, no parse", n, floor),
        );
        self.intake_empty()?;
        let run = self.empty_intake.as_ref().expect("just measured");
        let (rate, secs) = (run.rate(), run.secs);
        let slower = secs / base;
        say("daemon ÷ baseline (time)", format!("{slower:.1}× (target ≤ 2×)"));
        self.row(
            "intake throughput",
            "≥ 5,000 tasks/s and ≤ 2× baseline",
            format!("{} ({n} in {secs:.2} s)", fmt_rate(rate)),
            format!("{} parse + rename + batched fsync", fmt_rate(n as f64 / base)),
            format!("{slower:.1}× slower"),
            verdict(rate >= 5000.0 && slower <= 2.0 && !run.timed_out),
        );
        self.reference_row(
            "intake vs group commit",
            rate,
            n as f64 / group,
            "parse + log + rewrite, parallel fdatasync per batch",
        );
        self.reference_row(
            "intake vs in-place rewrite",
            rate,
            n as f64 / inplace,
            "parse + log + rename, rewritten in its own inode, syncfs per batch",
        );
        self.reference_row(
            "intake vs per-file fsync",
            rate,
            n as f64 / floor,
            "durable move per file",
        );
        Ok(())
    }

    /// A scratch root for an intake reference: `n` task files staged in `<root>/<staged_in>`,
    /// an `inbox/` and an empty `assigned/bench/`.
    fn intake_scratch(&self, name: &str, staged_in: &str, n: usize) -> Res<IntakeScratch> {
        let root = self.root(name);
        let (staged, inbox, dest, trash) = (
            root.join(staged_in),
            root.join("inbox"),
            root.join("assigned/bench"),
            root.join("trash"),
        );
        mkdirs(&[&inbox, &dest, &trash])?;
        let names = stage(&staged, "new", "bench", n)?;
        Ok(IntakeScratch {
            root,
            staged,
            inbox,
            dest,
            trash,
            names,
        })
    }

    /// The least intake can do: read + parse + validate each file and write one log line for
    /// it; per batch one log fdatasync, the renames, and one fsync of each directory.
    fn intake_baseline(&self, n: usize) -> Res<f64> {
        let IntakeScratch {
            root: dir,
            staged: stage_dir,
            inbox,
            dest,
            names,
            ..
        } = self.intake_scratch("intake-baseline", "stage", n)?;
        let mut log = append_log(&dir)?;
        sync_disks();
        let t0 = Instant::now();
        rename_all(&stage_dir, &inbox, &names)?;
        let mut listed: Vec<String> = fs::read_dir(&inbox)
            .map_err(io(inbox.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        listed.sort();
        let mut seq = 0;
        for chunk in listed.chunks(BATCH) {
            log_batch(&mut log, &inbox, chunk, &mut seq)?;
            for name in chunk {
                fs::rename(inbox.join(name), dest.join(name)).map_err(io(name))?;
            }
            for d in [&dest, &inbox] {
                fsops::fsync_dir(d).map_err(|e| e.to_string())?;
            }
        }
        Ok(t0.elapsed().as_secs_f64())
    }

    /// Time a reference over `n` files in an inbox: per batch of `BATCH`, each file read,
    /// parsed and given a log line, one log fdatasync, then `per_batch` with the batch's
    /// names and texts.
    fn logged_batches(
        &self,
        name: &str,
        n: usize,
        mut per_batch: impl FnMut(&IntakeScratch, &[String], Vec<String>) -> Res<()>,
    ) -> Res<f64> {
        let scratch = self.intake_scratch(name, "inbox", n)?;
        let mut log = append_log(&scratch.root)?;
        sync_disks();
        let t0 = Instant::now();
        let mut seq = 0;
        for chunk in scratch.names.chunks(BATCH) {
            let texts = log_batch(&mut log, &scratch.inbox, chunk, &mut seq)?;
            per_batch(&scratch, chunk, texts)?;
        }
        Ok(t0.elapsed().as_secs_f64())
    }

    /// What a group-committed intake could reach: as the baseline, but each file is rewritten
    /// (a status line added) through a temp file, the temp files of a batch are fdatasynced
    /// by `SYNC_THREADS` threads at once (so the device sees a queue, not one write at a time),
    /// then renamed, one fsync of the destination, the inbox files set aside, one fsync of the inbox.
    fn group_commit_reference(&self, n: usize) -> Res<f64> {
        self.logged_batches("intake-group", n, |scratch, chunk, texts| {
            let IntakeScratch {
                inbox, dest, trash, ..
            } = scratch;
            let mut temps = Vec::with_capacity(chunk.len());
            for (name, text) in chunk.iter().zip(texts) {
                let tmp = fsops::temp_path(dest);
                let mut file = File::create_new(&tmp).map_err(io(tmp.display()))?;
                file.write_all(format!("{text}status: assigned\n").as_bytes())
                    .map_err(io(tmp.display()))?;
                temps.push((file, tmp, dest.join(name)));
            }
            let per_thread = temps.len().div_ceil(SYNC_THREADS);
            std::thread::scope(|s| {
                let workers: Vec<_> = temps
                    .chunks(per_thread)
                    .map(|part| s.spawn(move || part.iter().try_for_each(|(f, _, _)| f.sync_data())))
                    .collect();
                workers
                    .into_iter()
                    .try_for_each(|w| w.join().unwrap_or_else(|_| Err(io::Error::other("panicked"))))
            })
            .map_err(io("reference fdatasync"))?;
            for (_, tmp, to) in &temps {
                fsops::rename(tmp, to).map_err(|e| e.to_string())?;
            }
            fsops::fsync_dir(dest).map_err(|e| e.to_string())?;
            for name in chunk {
                set_aside(inbox, name, trash)?;
            }
            fsops::fsync_dir(inbox).map_err(|e| e.to_string())
        })
    }

    /// What a rewrite costs without a new file: as the group commit, but each inbox file is
    /// renamed into place and then rewritten in its own inode (no inode allocated, no temp
    /// name, nothing set aside), one `syncfs` per batch making the data durable. Not crash-safe
    /// as it stands (a power loss can tear a file whose old bytes are gone; the daemon's
    /// in-place intake keeps a redo record for that, decisions.md): the rewrite's own cost.
    fn in_place_reference(&self, n: usize) -> Res<f64> {
        self.logged_batches("intake-in-place", n, |scratch, chunk, texts| {
            let IntakeScratch { inbox, dest, .. } = scratch;
            for (name, text) in chunk.iter().zip(texts) {
                let to = dest.join(name);
                fs::rename(inbox.join(name), &to).map_err(io(name))?;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&to)
                    .map_err(io(to.display()))?;
                std::os::unix::fs::FileExt::write_all_at(
                    &file,
                    format!("{text}status: assigned\n").as_bytes(),
                    0,
                )
                .map_err(io(to.display()))?;
            }
            // One syncfs, as the daemon's batches do.
            fsops::sync_filesystem(dest).map_err(|e| e.to_string())?;
            fsops::fsync_dir(dest).map_err(|e| e.to_string())?;
            fsops::fsync_dir(inbox).map_err(|e| e.to_string())
        })
    }

    /// The same files moved one at a time with the daemon's own primitives (write temp +
    /// fdatasync + rename + fsync dir, the inbox file set aside + fsync dir), nothing else: the
    /// ceiling of any design that makes each file durable on its own.
    fn per_file_reference(&self, n: usize) -> Res<f64> {
        let IntakeScratch {
            inbox,
            dest,
            trash,
            names,
            ..
        } = self.intake_scratch("intake-per-file", "inbox", n)?;
        sync_disks();
        let t0 = Instant::now();
        for name in &names {
            let bytes = fs::read(inbox.join(name)).map_err(io(name))?;
            fsops::write_atomic(&dest.join(name), &bytes).map_err(|e| e.to_string())?;
            set_aside(&inbox, name, &trash)?;
            fsops::fsync_dir(&inbox).map_err(|e| e.to_string())?;
        }
        Ok(t0.elapsed().as_secs_f64())
    }

    // -- end-to-end -------------------------------------------------------------------------

    fn fig_e2e(&mut self) -> Res<()> {
        let n = self.sizes.e2e;
        println!("end-to-end throughput: {n} tasks, agent command `true`, max_concurrent 4");
        let floor = spawn_floor(n)?;
        say(
            "baseline",
            rate_line(
                &format!("{n} × `true` spawned and reaped by this program, 4 at a time"),
                n,
                floor,
            ),
        );
        let run = self.e2e_run("e2e", n)?;
        let rate = run.rate();
        say("agentplane", run.describe());
        self.row(
            "end-to-end throughput",
            "≥ 300 tasks/s",
            format!("{} ({n} in {:.2} s)", fmt_rate(rate), run.secs),
            format!("{} bare spawn, 4 at a time", fmt_rate(n as f64 / floor)),
            compared(rate, n as f64 / floor),
            verdict(rate >= 300.0 && !run.timed_out),
        );
        // A queue four times as long must not make each task dearer (a dispatcher that looks
        // at every waiting task each round is O(n²) over the drain).
        let many = 4 * n;
        let long = self.e2e_run("e2e-long", many)?;
        say("agentplane, 4× the tasks", long.describe());
        self.row(
            &format!("end-to-end, {many} tasks"),
            "(reference)",
            format!("{} ({many} in {:.2} s)", fmt_rate(long.rate()), long.secs),
            format!("{} with {n}", fmt_rate(rate)),
            format!("{:.2}", long.rate() / rate),
            Verdict::Info,
        );
        let Some((client, server)) = self.pueue.clone() else {
            say("pueue", "not measured (not installed, or --no-pueue)");
            return Ok(());
        };
        let secs = self.pueue_run(&client, &server, n)?;
        let prate = n as f64 / secs;
        say(
            "pueue",
            format!(
                "{n} × `true`, 4 parallel (added to a paused group, timed from start): {secs:.2} s = {}",
                fmt_rate(prate)
            ),
        );
        say("agentplane ÷ pueue (rate)", format!("{:.1}×", rate / prate));
        self.reference_row("end-to-end vs pueue", rate, prate, "pueue, 4 parallel");
        Ok(())
    }

    /// `n` tasks of an agent whose command is `true` (4 at a time) dropped into a new root,
    /// until all are in `done/`.
    fn e2e_run(&self, name: &str, n: usize) -> Res<DropRun> {
        let root = self.root(name);
        let config = "max_concurrent: 4\nagents:\n  bench:\n    command: [\"true\"]\n    max_concurrent: 4\n";
        let (run, _) = self.drop_into_new_root(&root, config, name, n, "done/bench")?;
        let failed = yaml_count(&collab(&root, "error/bench"));
        if failed > 0 {
            return Err(format!("{failed} of the `true` tasks ended in error/"));
        }
        Ok(run)
    }

    /// pueue with its own config, socket and state in the scratch dir; the tasks are added to
    /// a paused group, then timed from `start` until `wait` returns.
    fn pueue_run(&self, client: &Path, server: &Path, n: usize) -> Res<f64> {
        let dir = self.root("pueue");
        mkdirs(&[&dir.join("data"), &dir.join("run")])?;
        let config = dir.join("pueue.yml");
        let d = dir.display();
        fs::write(
            &config,
            format!(
                "shared:\n  pueue_directory: {d}/data\n  runtime_directory: {d}/run\n  use_unix_socket: true\n  \
                 unix_socket_path: {d}/pueue.socket\ndaemon:\n  default_parallel_tasks: 4\n"
            ),
        )
        .map_err(io("pueue config"))?;
        let log = File::create(dir.join("pueued.log")).map_err(io("pueued log"))?;
        let mut daemon = Reaped(
            Command::new(server)
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(io("cannot start pueued"))?,
        );
        let pueue = |args: &[&str]| -> Res<()> {
            let out = Command::new(client)
                .arg("-c")
                .arg(&config)
                .args(args)
                .current_dir(&dir)
                .output()
                .map_err(io("cannot run pueue"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "pueue {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while pueue(&["status"]).is_err() {
            if Instant::now() > deadline || daemon.0.try_wait().ok().flatten().is_some() {
                return Err(format!("pueued did not come up; see {d}/pueued.log"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        pueue(&["parallel", "4"])?;
        pueue(&["pause"])?;
        for _ in 0..n {
            pueue(&["add", "--", "true"])?;
        }
        let t0 = Instant::now();
        pueue(&["start"])?;
        pueue(&["wait", "--quiet"])?;
        let secs = t0.elapsed().as_secs_f64();
        let _ = pueue(&["shutdown"]);
        let _ = daemon.0.wait();
        Ok(secs)
    }

    // -- latency ----------------------------------------------------------------------------

    fn fig_latency(&mut self) -> Res<()> {
        let n = self.sizes.latency;
        println!(
            "latency: one task at a time into an idle daemon, {n} samples (file written, then renamed in)"
        );
        let base = self.latency_baseline(n)?;
        let root = self.root("latency");
        let markers = root.join("markers");
        let marker = json!(format!("{}/{{task_id}}", markers.display()));
        init_root(
            &self.daemon,
            &root,
            &format!("agents:\n  lat:\n    command: [\"touch\", {marker}]\n"),
        )?;
        let (stage_dir, inbox) = (root.join("stage"), collab(&root, "inbox"));
        let (assigned, done) = (collab(&root, "assigned/lat"), collab(&root, "done/lat"));
        mkdirs(&[&markers, &stage_dir, &assigned, &done])?;
        let mut ino = inotify()?;
        let wd_assigned = watch(&ino, &assigned, libc::IN_MOVED_TO)?;
        let wd_done = watch(&ino, &done, libc::IN_MOVED_TO)?;
        let wd_marker = watch(&ino, &markers, libc::IN_CREATE)?;
        let mut d = Daemon::start(&self.daemon, &root)?;
        d.ready(Duration::from_secs(60))?;
        std::thread::sleep(Duration::from_millis(200));
        let (mut to_assigned, mut to_child) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let id = format!("lat-{i:06}");
            let name = format!("{id}.yaml");
            fs::write(stage_dir.join(&name), task_text(&id, "lat", i)).map_err(io(&name))?;
            let t0 = Instant::now();
            fs::rename(stage_dir.join(&name), inbox.join(&name)).map_err(io(&name))?;
            let (mut a, mut c, mut finished) = (None, None, false);
            while !finished {
                let left = Duration::from_secs(30).saturating_sub(t0.elapsed());
                if left.is_zero() {
                    return Err(format!("task {id} was not done 30 s after its drop"));
                }
                for (wd, file) in events(&mut ino, left)? {
                    let at = t0.elapsed().as_secs_f64() * 1e3;
                    if wd == wd_assigned && file == name && a.is_none() {
                        a = Some(at);
                    } else if wd == wd_marker && file == id {
                        c = Some(at);
                    } else if wd == wd_done && file == name {
                        finished = true;
                    }
                }
            }
            let (Some(a), Some(c)) = (a, c) else {
                return Err(format!("task {id}: assigned or child start not observed"));
            };
            to_assigned.push(a);
            to_child.push(c);
            // Let the daemon finish its round and go idle again.
            std::thread::sleep(Duration::from_millis(10));
        }
        d.finish("the daemon")?;
        for v in [&mut to_assigned, &mut to_child] {
            v.sort_by(f64::total_cmp);
        }
        let show = |v: &[f64]| {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                percentile(v, 50.0),
                percentile(v, 99.0),
                v.last().copied().unwrap_or(f64::NAN)
            )
        };
        say("baseline drop → assigned", show(&base.0));
        say("baseline drop → child", show(&base.1));
        say("daemon drop → assigned", show(&to_assigned));
        say("daemon drop → child", show(&to_child));
        for (what, v, b) in [
            ("latency drop → assigned", &to_assigned, &base.0),
            ("latency drop → child started", &to_child, &base.1),
        ] {
            let (p50, p99) = (percentile(v, 50.0), percentile(v, 99.0));
            self.row(
                what,
                "p50 ≤ 5 ms, p99 ≤ 25 ms",
                format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms",
                    percentile(b, 50.0),
                    percentile(b, 99.0)
                ),
                format!("{:.1}× (p50)", p50 / percentile(b, 50.0)),
                verdict(p50 <= 5.0 && p99 <= 25.0),
            );
        }
        Ok(())
    }

    /// One task at a time through the daemon's durable protocol, done inline by this program:
    /// read + parse, one log line + fdatasync, the destination written to a temp file +
    /// fdatasync and renamed (→ assigned), dir fsync, the inbox file set aside (as the daemon
    /// moves it to its trash) + dir fsync, then `touch` spawned (→ child started, seen through
    /// inotify as for the daemon).
    fn latency_baseline(&self, n: usize) -> Res<(Vec<f64>, Vec<f64>)> {
        let dir = self.root("latency-baseline");
        let (stage_dir, inbox, dest, markers, trash) = (
            dir.join("stage"),
            dir.join("inbox"),
            dir.join("assigned/lat"),
            dir.join("markers"),
            dir.join("trash"),
        );
        mkdirs(&[&stage_dir, &inbox, &dest, &markers, &trash])?;
        let mut ino = inotify()?;
        watch(&ino, &markers, libc::IN_CREATE)?;
        let mut log = append_log(&dir)?;
        let (mut a, mut c) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let id = format!("lat-{i:06}");
            let name = format!("{id}.yaml");
            fs::write(stage_dir.join(&name), task_text(&id, "lat", i)).map_err(io(&name))?;
            let t0 = Instant::now();
            fs::rename(stage_dir.join(&name), inbox.join(&name)).map_err(io(&name))?;
            let (text, task) = read_task(&inbox.join(&name))?;
            log.write_all(event_line(i as u64 + 1, &task, &name).as_bytes())
                .map_err(io("baseline log"))?;
            log.sync_data().map_err(io("baseline log fsync"))?;
            let tmp = fsops::write_temp(&dest.join(&name), text.as_bytes()).map_err(|e| e.to_string())?;
            fsops::rename(&tmp, &dest.join(&name)).map_err(|e| e.to_string())?;
            a.push(t0.elapsed().as_secs_f64() * 1e3);
            fsops::fsync_dir(&dest).map_err(|e| e.to_string())?;
            set_aside(&inbox, &name, &trash)?;
            fsops::fsync_dir(&inbox).map_err(|e| e.to_string())?;
            let mut child = Reaped(
                Command::new("touch")
                    .arg(markers.join(&id))
                    .spawn()
                    .map_err(io("cannot run touch"))?,
            );
            while !events(&mut ino, Duration::from_secs(10))?
                .iter()
                .any(|(_, f)| *f == id)
            {
                if t0.elapsed() > Duration::from_secs(10) {
                    return Err(format!("touch did not create the marker of {id}"));
                }
            }
            c.push(t0.elapsed().as_secs_f64() * 1e3);
            child.0.wait().map_err(io("touch"))?;
        }
        a.sort_by(f64::total_cmp);
        c.sort_by(f64::total_cmp);
        Ok((a, c))
    }

    // -- start-up, idle cost, growth, rebuild, queries: one large root ----------------------

    /// A root with `big_tasks` tasks and 10 events each on average (`generate_history`). One
    /// daemon is started on it and measured for start-up; for intake with those tasks present
    /// right after READY (before the first periodic rescan is due); for idle cost; for queries
    /// once it is idle (after the idle window, so that they neither disturb its CPU figure nor
    /// delay the first drop); and for intake again in that steady state. Once it is stopped,
    /// the index is rebuilt by hand.
    fn big_root(&mut self, figures: &[Figure]) -> Res<()> {
        let want = |f: Figure| figures.contains(&f);
        let (startup, idle, growth) = (want(Figure::Startup), want(Figure::Idle), want(Figure::Growth));
        let n = self.sizes.big_tasks;
        if growth && self.empty_intake.is_none() {
            println!("intake into an empty root (the reference for growth)");
            self.intake_empty()?;
        }
        let root = self.root("big");
        init_root(
            &self.daemon,
            &root,
            // The generated history spans months: with the default archive_after_days the
            // first start would archive most of it, and measure that instead of a start.
            "# agentplane-bench: defaults but no archiving, no agents listed\narchive_after_days: 0\n",
        )?;
        let t0 = Instant::now();
        let history = generate_history(&root, n)?;
        let events = history.events;
        sync_disks();
        println!(
            "large root: {n} task files ({} in assigned/, the rest in done/) + {events} events ({:.0} MiB) \
             generated in {:.1} s",
            history.assigned,
            log_len(&root) as f64 / 1048576.0,
            t0.elapsed().as_secs_f64()
        );
        let base = if startup {
            Some(startup_baseline(&root)?)
        } else {
            None
        };
        // The first start meets a tree it never saw: it replays the whole log, reads every
        // task file once (no snapshot of the state yet) and builds the index in the
        // background. A restart — what a service restart or reboot does — finds the snapshot
        // its last stop saved. Both are shown; the target is the restart's.
        let mut first = Daemon::start(&self.daemon, &root)?;
        let first_ready = first.ready(Duration::from_secs(1800))?;
        index_caught_up(&self.daemon, &root, Duration::from_secs(600))?;
        first.drain();
        first.finish("the first daemon on the large root")?;
        let mut d = Daemon::start(&self.daemon, &root)?;
        let ready = d.ready(Duration::from_secs(1800))?;
        if first_ready.seq != events + 1 {
            say(
                "note",
                format!(
                    "start-up logged {} event(s) besides daemon_started: the generated history has drifted from the engine's",
                    first_ready.seq.saturating_sub(events + 1)
                ),
            );
        }
        if let Some(StartupFloor { decode, checksums }) = base {
            println!("start-up: {n} task files + {events} events → READY logged");
            say(
                "baseline",
                format!("read the log + verify its checksums, list + stat every task file: {checksums:.2} s"),
            );
            say(
                "reference",
                format!("read + verify + decode the log, list + stat every task file: {decode:.2} s"),
            );
            let first_secs = first_ready.after.as_secs_f64();
            say(
                "first start",
                format!(
                    "READY after {first_secs:.2} s (its own count {} ms): every task file read once",
                    first_ready.ms
                ),
            );
            let secs = ready.after.as_secs_f64();
            say(
                "restart",
                format!(
                    "READY after {secs:.2} s (its own count {} ms, {} tasks, RSS {:.0} MiB, peak {:.0} MiB)",
                    ready.ms,
                    ready.tasks,
                    status_mib(d.pid(), "VmRSS"),
                    status_mib(d.pid(), "VmHWM")
                ),
            );
            self.row(
                "start-up",
                "≤ 3 s",
                format!("{secs:.2} s"),
                format!("{checksums:.2} s log checksums + stat"),
                compared(1.0 / secs, 1.0 / checksums),
                verdict(secs <= 3.0),
            );
            self.row(
                "start-up vs whole-log decode",
                "(reference)",
                format!("{secs:.2} s"),
                format!("{decode:.2} s log decode + stat"),
                compared(1.0 / secs, 1.0 / decode),
                Verdict::Info,
            );
            self.row(
                "start-up, first on a tree never seen",
                "(reference)",
                format!("{first_secs:.2} s"),
                format!("{decode:.2} s log decode + stat"),
                compared(1.0 / first_secs, 1.0 / decode),
                Verdict::Info,
            );
        }
        let dropped = if growth { self.sizes.intake } else { 0 };
        if growth {
            self.growth(&d, &root, "new", n, "right after start")?;
        }
        if idle {
            self.idle(&d, n + dropped)?;
        } else if growth {
            std::thread::sleep(self.sizes.idle);
        }
        if want(Figure::Queries) {
            self.queries(&root)?;
        }
        if growth {
            self.growth(&d, &root, "late", n + dropped, "steady state")?;
        }
        d.drain();
        let took = d.finish("the daemon on the large root")?;
        say(
            "stop",
            format!(
                "the large-root daemon exited {:.1} s after SIGTERM",
                took.as_secs_f64()
            ),
        );
        if want(Figure::Rebuild) {
            self.rebuild(&root)?;
        }
        Ok(())
    }

    /// One drop into the large-root daemon, as a ratio to the empty-root intake. The files
    /// are staged just before the drop, as for the empty root: files written minutes earlier
    /// may have left the page cache (this VM pages out what has been cold for 60 s), and the
    /// drop would then measure disk reads instead of the daemon.
    fn growth(&mut self, d: &Daemon, root: &Path, prefix: &str, present: usize, when: &str) -> Res<()> {
        let empty = self.empty_intake.as_ref().expect("measured first").rate();
        let names = stage(&root.join("stage"), prefix, "bench", self.sizes.intake)?;
        println!(
            "growth, {when}: intake of {} tasks with {present} tasks present",
            names.len()
        );
        let dest = collab(root, "assigned/bench");
        let already = yaml_count(&dest);
        let run = timed_drop(d, root, &names, &dest, already, self.sizes.drop_timeout)?;
        let ratio = run.rate() / empty;
        say(&format!("daemon, {present} present"), run.describe());
        say(
            "÷ empty root",
            format!("{ratio:.2} (empty root: {}; target ≥ 0.7)", fmt_rate(empty)),
        );
        self.row(
            &format!("growth, {when}"),
            "≥ 0.7",
            format!("{ratio:.2} ({} with {present} present)", fmt_rate(run.rate())),
            format!("{} empty root", fmt_rate(empty)),
            format!("{ratio:.2}"),
            verdict(ratio >= 0.7 && !run.timed_out),
        );
        Ok(())
    }

    /// CPU and RSS of the large-root daemon over the idle window, next to a daemon on an empty
    /// root measured over the same window.
    fn idle(&mut self, d: &Daemon, n: usize) -> Res<()> {
        let window = self.sizes.idle;
        println!("idle cost: daemon idle {} s with {n} tasks", window.as_secs());
        let empty_root = self.root("idle-empty");
        init_root(&self.daemon, &empty_root, "# agentplane-bench: defaults\n")?;
        let mut e = Daemon::start(&self.daemon, &empty_root)?;
        e.ready(Duration::from_secs(60))?;
        let (c0, ce0) = (cpu_seconds(d.pid()), cpu_seconds(e.pid()));
        std::thread::sleep(window);
        let (cpu, ecpu) = (cpu_seconds(d.pid()) - c0, cpu_seconds(e.pid()) - ce0);
        let (rss, hwm) = (status_mib(d.pid(), "VmRSS"), status_mib(d.pid(), "VmHWM"));
        let erss = status_mib(e.pid(), "VmRSS");
        e.finish("the empty-root daemon")?;
        let pct = cpu / window.as_secs_f64() * 100.0;
        say(
            "baseline",
            format!("the daemon on an empty root, same window: CPU {ecpu:.2} s, RSS {erss:.1} MiB"),
        );
        say(
            &format!("daemon, {n} tasks"),
            format!("CPU {cpu:.2} s ({pct:.1}% of a core), RSS {rss:.1} MiB (peak {hwm:.1} MiB)"),
        );
        self.row(
            "idle cost: CPU",
            "~0",
            format!("{cpu:.2} s in {} s ({pct:.1}% of a core)", window.as_secs()),
            format!("{ecpu:.2} s empty root"),
            "—".into(),
            verdict(pct < 1.0),
        );
        self.row(
            "idle cost: RSS",
            "≤ 64 MB",
            format!("{:.0} MB (peak {:.0} MB)", rss * 1.048576, hwm * 1.048576),
            format!("{:.0} MB empty root", erss * 1.048576),
            format!("{:.0}×", rss / erss),
            verdict(rss * 1.048576 <= 64.0),
        );
        Ok(())
    }

    // -- query-path figures -----------------------------------------------------------------

    /// `agentplane index rebuild` on the stopped large root, its index deleted first, next to
    /// the bench reading the log itself (the library's `journal::read_all`: read + CRC +
    /// decode) and two references: SQLite inserting one row per event, and SQLite writing the
    /// rebuilt index's own rows into a new file (the floor of a rebuild with this schema).
    fn rebuild(&mut self, root: &Path) -> Res<()> {
        let state = root.join("work/.agentplane");
        for e in fs::read_dir(&state).map_err(io(state.display()))? {
            let e = e.map_err(io(state.display()))?;
            if e.file_name().as_bytes().starts_with(b"index.sqlite") {
                fs::remove_file(e.path()).map_err(io(e.path().display()))?;
            }
        }
        let (decode, events) = decode_log(root)?;
        let n = events.len();
        println!("index rebuild: {n} events → SQLite, no daemon running, index deleted");
        let insert = sqlite_insert_reference(&self.root("sqlite-reference"), &events)?;
        drop(events);
        sync_disks();
        let (ms, out) = timed_run(&mut cli(&self.daemon, root, &["index", "rebuild", "--json"]))?;
        let report: Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("index rebuild --json: {e}"))?;
        if report["events"].as_u64() != Some(n as u64) {
            return Err(format!(
                "index rebuild projected other events than the log holds ({n}): {report}"
            ));
        }
        let (secs, rate) = (ms / 1e3, n as f64 / (ms / 1e3));
        let own_rows = sqlite_copy_reference(
            &self.root("sqlite-reference"),
            &root.join("work/.agentplane/index.sqlite"),
        )?;
        say("baseline", rate_line("read + verify + decode the log", n, decode));
        say(
            "reference: SQLite insert",
            rate_line(
                &format!("{n} rows, one prepared statement, one transaction"),
                n,
                insert,
            ),
        );
        say(
            "reference: its own rows",
            rate_line(
                &format!(
                    "the rebuilt index's {} rows written back by SQLite alone, indexes made, one fsync",
                    own_rows.rows
                ),
                n,
                own_rows.secs,
            ),
        );
        say(
            "agentplane index rebuild",
            format!(
                "{secs:.2} s = {} (its own count {} ms; {} tasks)",
                fmt_rate(rate),
                report["ms"],
                report["tasks"]
            ),
        );
        self.row(
            "index rebuild",
            "≥ 300,000 events/s",
            format!("{} ({n} in {secs:.2} s)", fmt_rate(rate)),
            format!("{} log read + verify + decode", fmt_rate(n as f64 / decode)),
            compared(rate, n as f64 / decode),
            verdict(rate >= 300_000.0),
        );
        self.reference_row(
            "index rebuild vs SQLite insert",
            rate,
            n as f64 / insert,
            "rows inserted in one transaction",
        );
        self.reference_row(
            "index rebuild vs SQLite writing its rows",
            rate,
            n as f64 / own_rows.secs,
            "events' worth of the index's own rows",
        );
        Ok(())
    }

    /// Each of `QUERIES` run by the real binary against the running daemon's index once it
    /// has caught up, `sizes.queries` times, interleaved with the two baselines so that load
    /// changes hit all alike: `agentplane --version` (the process floor) and the same reads
    /// done in-process through the library's read half (`Reader`: the CLI's own SQL, opened
    /// read-only as the CLI opens it, open included).
    fn queries(&mut self, root: &Path) -> Res<()> {
        let runs = self.sizes.queries;
        let status = index_caught_up(&self.daemon, root, Duration::from_secs(600))?;
        let tasks = format!(
            "{} tasks, {} assigned",
            status["total"], status["counts"]["assigned"]
        );
        println!("queries: {tasks}; daemon idle, index caught up; {runs} runs each");
        let (db, log) = (root.join("work/.agentplane/index.sqlite"), events_path(root));
        let mut floor = Vec::with_capacity(runs);
        let mut cli_ms = vec![Vec::with_capacity(runs); QUERIES.len()];
        let mut sql_ms = cli_ms.clone();
        let mut noise = None;
        for _ in 0..runs {
            floor.push(timed_run(Command::new(&self.daemon).arg("--version"))?.0);
            for (i, q) in QUERIES.iter().enumerate() {
                let (ms, out) = timed_run(&mut cli(&self.daemon, root, q.args))?;
                cli_ms[i].push(ms);
                if !out.stderr.is_empty() && noise.is_none() {
                    noise = Some(String::from_utf8_lossy(&out.stderr).into_owned());
                }
                let t0 = Instant::now();
                Reader::open(&db, &log, true)
                    .and_then(|r| (q.read)(&r))
                    .map_err(|e| format!("in-process {:?}: {e}", q.args))?;
                sql_ms[i].push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        for v in cli_ms.iter_mut().chain(sql_ms.iter_mut()).chain([&mut floor]) {
            v.sort_by(f64::total_cmp);
        }
        if let Some(text) = noise {
            say("note", format!("a query wrote to stderr: {}", text.trim()));
        }
        let show = |v: &[f64]| {
            format!(
                "p50 {:.1} ms, max {:.1} ms",
                percentile(v, 50.0),
                v.last().copied().unwrap_or(f64::NAN)
            )
        };
        let fl = percentile(&floor, 50.0);
        say(
            "baseline: process floor",
            format!("agentplane --version: {}", show(&floor)),
        );
        for (q, (cli, sql)) in QUERIES.iter().zip(cli_ms.iter().zip(&sql_ms)) {
            let (p50, base) = (percentile(cli, 50.0), percentile(sql, 50.0) + fl);
            let args = q.args.join(" ");
            say("baseline: in-process", format!("{args}: {}", show(sql)));
            say(
                "agentplane",
                format!("{args}: {} (target ≤ {} ms)", show(cli), q.target_ms),
            );
            self.row(
                &format!("query {args}"),
                &format!("≤ {} ms", q.target_ms),
                format!("{} ({tasks})", show(cli)),
                format!(
                    "p50 {:.1} ms in-process + {fl:.1} ms process floor",
                    percentile(sql, 50.0)
                ),
                format!("{:.1}× (p50)", p50 / base),
                verdict(p50 <= q.target_ms),
            );
        }
        Ok(())
    }
}

/// A query of the `queries` figure: the CLI's arguments, its target, and the reads it makes
/// of the index, done in-process for the baseline.
struct QuerySpec {
    args: &'static [&'static str],
    target_ms: f64,
    read: fn(&Reader) -> Result<(), IndexError>,
}

const QUERIES: [QuerySpec; 3] = [
    QuerySpec {
        args: &["status", "--json"],
        target_ms: 50.0,
        read: status_reads,
    },
    QuerySpec {
        args: &["list", "--status", "assigned"],
        target_ms: 150.0,
        read: |r| r.task_lines(&assigned_filter()).map(drop),
    },
    QuerySpec {
        args: &["list", "--status", "assigned", "--json"],
        target_ms: 150.0,
        read: |r| r.tasks(&assigned_filter()).map(drop),
    },
];

/// What `status` reads from the index (src/query/status.rs).
fn status_reads(r: &Reader) -> Result<(), IndexError> {
    r.counts()?;
    r.in_progress()?;
    r.problems()?;
    r.runs(None).map(drop)
}

fn assigned_filter() -> TaskFilter {
    TaskFilter {
        status: Some("assigned".into()),
        ..TaskFilter::default()
    }
}

/// `agentplane --root R ARGS`, the CLI as a user runs it.
fn cli(bin: &Path, root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--root").arg(root).args(args).stdin(Stdio::null());
    cmd
}

/// Run a command to its end with its output captured (read as a pipe reader would); returns
/// the wall-clock milliseconds and the output. A failing exit is an error.
fn timed_run(cmd: &mut Command) -> Res<(f64, std::process::Output)> {
    let t0 = Instant::now();
    let out = cmd.output().map_err(io(format!("cannot run {cmd:?}")))?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((ms, out))
}

/// Poll `status --json` until the index has applied the whole log (`last_seq` equals
/// `log_last_seq`, read from the index, not the log fallback): queries must measure the
/// index, not a catch-up. Returns that answer.
fn index_caught_up(bin: &Path, root: &Path, timeout: Duration) -> Res<Value> {
    let t0 = Instant::now();
    loop {
        let (_, out) = timed_run(&mut cli(bin, root, &["status", "--json"]))?;
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("status --json: {e}"))?;
        if v["source"] == "index" && v["last_seq"] == v["log_last_seq"] {
            return Ok(v);
        }
        if t0.elapsed() > timeout {
            return Err(format!(
                "the index did not catch up with the log within {timeout:?}: {v}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A child that is killed and reaped if it is still running when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `n` × `true`, four children at a time, spawned and reaped by this program.
fn spawn_floor(n: usize) -> Res<f64> {
    let t0 = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || -> io::Result<()> {
                for _ in (w..n).step_by(4) {
                    Command::new("true")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| "a spawn worker panicked".to_string())?
            .map_err(io("cannot spawn `true`"))?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Read + verify + decode the whole log with the library's journal read; returns the seconds
/// that took and the events.
fn decode_log(root: &Path) -> Res<(f64, Vec<Event>)> {
    let t0 = Instant::now();
    let events = agentplane::store::journal::read_all(&events_path(root)).map_err(|e| e.to_string())?;
    Ok((t0.elapsed().as_secs_f64(), events))
}

/// What a start cannot avoid, measured on the same root: list + stat every task file, and the
/// log read and verified — by decoding every event (what a start without a snapshot of the
/// state does) or by its checksums alone (what a start from the snapshot does with the lines
/// before it).
struct StartupFloor {
    decode: f64,
    checksums: f64,
}

fn startup_baseline(root: &Path) -> Res<StartupFloor> {
    let (decode, events) = decode_log(root)?;
    let t0 = Instant::now();
    let log = events_path(root);
    let mut file = File::open(&log).map_err(io(log.display()))?;
    let len = file.metadata().map_err(io(log.display()))?.len();
    agentplane::store::journal::verify_checksums(&log, &mut file, len).map_err(|e| e.to_string())?;
    let checksums = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut files = 0;
    for dir in [collab(root, "done/bench"), collab(root, "assigned/bench")] {
        for e in fs::read_dir(&dir).map_err(io(dir.display()))? {
            let e = e.map_err(io(dir.display()))?;
            fs::symlink_metadata(e.path()).map_err(io(e.path().display()))?;
            files += 1;
        }
    }
    let stat = t0.elapsed().as_secs_f64();
    if files == 0 || events.is_empty() {
        return Err("the large root is empty".into());
    }
    Ok(StartupFloor {
        decode: decode + stat,
        checksums: checksums + stat,
    })
}

/// What SQLite alone costs for the rows of a rebuild: one row per event (seq, task id, event
/// name: the key columns of the index's `events` table) inserted with one prepared statement
/// in one transaction into a new file, without journal or syncs as the rebuild's scratch file,
/// one fsync at the end. SQLite is configured as the daemon configures it.
fn sqlite_insert_reference(dir: &Path, events: &[Event]) -> Res<f64> {
    let sql = |e: rusqlite::Error| format!("the SQLite reference: {e}");
    mkdirs(&[dir])?;
    let path = dir.join("rows.sqlite");
    let t0 = Instant::now();
    let mut conn = agentplane::store::index::connect(&path, rusqlite::OpenFlags::default()).map_err(sql)?;
    conn.execute_batch(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
         CREATE TABLE events (seq INTEGER PRIMARY KEY, task_id TEXT, event TEXT NOT NULL);",
    )
    .map_err(sql)?;
    let tx = conn.transaction().map_err(sql)?;
    {
        let mut insert = tx
            .prepare("INSERT INTO events VALUES (?1, ?2, ?3)")
            .map_err(sql)?;
        for e in events {
            insert
                .execute(rusqlite::params![e.seq as i64, e.task_id, e.event])
                .map_err(sql)?;
        }
    }
    tx.commit().map_err(sql)?;
    conn.close().map_err(|(_, e)| sql(e))?;
    File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(io(path.display()))?;
    Ok(t0.elapsed().as_secs_f64())
}

/// What SQLite alone costs for the index a rebuild writes: every row of the rebuilt index
/// (`index`), read into memory first (not timed), written into a new file made from the
/// index's own schema (`sqlite_master`) and configured as a rebuild configures its file, the
/// rows table by table in one transaction, then the index's indexes, then one fsync. What a
/// rebuild could take if decoding and projecting cost nothing.
fn sqlite_copy_reference(dir: &Path, index: &Path) -> Res<OwnRows> {
    use rusqlite::types::Value as Cell;
    let sql = |e: rusqlite::Error| format!("the SQLite reference of {}: {e}", index.display());
    let source =
        agentplane::store::index::connect(index, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
    let schema = |kind: &str| -> Res<Vec<(String, String)>> {
        let mut stmt = source
            .prepare("SELECT name, sql FROM sqlite_master WHERE type = ?1 AND sql IS NOT NULL ORDER BY rowid")
            .map_err(sql)?;
        let rows = stmt
            .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    };
    let (tables, indexes) = (schema("table")?, schema("index")?);
    let mut contents: Vec<(String, usize, Vec<Cell>)> = Vec::new();
    let mut rows = 0;
    for (table, _) in &tables {
        let mut stmt = source.prepare(&format!("SELECT * FROM {table}")).map_err(sql)?;
        let columns = stmt.column_count();
        let mut cells = Vec::new();
        let mut found = stmt.query([]).map_err(sql)?;
        while let Some(row) = found.next().map_err(sql)? {
            for i in 0..columns {
                cells.push(row.get::<_, Cell>(i).map_err(sql)?);
            }
            rows += 1;
        }
        contents.push((table.clone(), columns, cells));
    }
    drop(source);
    mkdirs(&[dir])?;
    let path = dir.join("own-rows.sqlite");
    let t0 = Instant::now();
    let mut conn = agentplane::store::index::connect(&path, rusqlite::OpenFlags::default()).map_err(sql)?;
    conn.execute_batch(agentplane::store::index::SCRATCH_PRAGMAS)
        .map_err(sql)?;
    for (_, create) in &tables {
        conn.execute_batch(create).map_err(sql)?;
    }
    let tx = conn.transaction().map_err(sql)?;
    for (table, columns, cells) in &contents {
        let marks = vec!["?"; *columns].join(", ");
        let mut insert = tx
            .prepare(&format!("INSERT INTO {table} VALUES ({marks})"))
            .map_err(sql)?;
        for row in cells.chunks(*columns) {
            insert.execute(rusqlite::params_from_iter(row)).map_err(sql)?;
        }
    }
    for (_, create) in &indexes {
        tx.execute_batch(create).map_err(sql)?;
    }
    tx.commit().map_err(sql)?;
    conn.close().map_err(|(_, e)| sql(e))?;
    File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(io(path.display()))?;
    Ok(OwnRows {
        rows,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// `sqlite_copy_reference`'s result: rows written, and the time it took.
struct OwnRows {
    rows: usize,
    secs: f64,
}

// ---------------------------------------------------------------------------------------------
// The large root's history

/// Appends events to a log file, numbered the way the journal numbers them.
struct LogWriter {
    out: BufWriter<File>,
    seq: u64,
}

impl LogWriter {
    fn push(&mut self, mut ev: Event, ts: &str) -> Res<()> {
        self.seq += 1;
        ev.seq = self.seq;
        ev.ts = ts.to_string();
        self.out
            .write_all(event::encode(&ev).as_bytes())
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(io("cannot write the generated log"))
    }
}

fn move_event(name: &str, id: &str, from: &str, to: &str, src: &str, path: &str, ino: u64) -> Event {
    let mut ev = Event::task(name, id);
    ev.agent = Some("bench".into());
    ev.from = Some(from.into());
    ev.to = Some(to.into());
    ev.op = Some("move".into());
    ev.src = Some(src.into());
    ev.src_ino = Some(ino);
    ev.path = Some(path.into());
    ev
}

fn edits(pairs: &[(&str, Value)]) -> Option<Map<String, Value>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

/// What `generate_history` made.
struct History {
    events: u64,
    /// Tasks left in `assigned/bench/`.
    assigned: usize,
}

/// Attempts task `i` of the generated history made. Of every ten tasks one is still assigned
/// (0 attempts: received + assigned, 2 events) so that `list --status assigned` has work to
/// list, two were done on the third attempt (14 events) and seven on the second (10 events):
/// 100 events per ten tasks, so `n` tasks (a multiple of ten) make exactly 10 × `n` events.
fn attempts_of(i: usize) -> u32 {
    match i % 10 {
        0 => 0,
        1 | 2 => 3,
        _ => 2,
    }
}

/// When attempt `a` of `attempts` ran, in seconds after the task arrived: a failed one lasts
/// 1 s and its retry is due 1 s later, the next starts 1 s after that; the last lasts 17 s.
fn attempt_window(a: u32, attempts: u32) -> (u64, u64) {
    let start = 3 * u64::from(a - 1);
    (start, start + if a == attempts { 17 } else { 1 })
}

/// One task of the generated history.
struct GenTask {
    id: String,
    i: usize,
    /// When it arrived in the inbox.
    t: SystemTime,
    /// The inode its inbox file is recorded with (its assigned file: `ino + 1`).
    ino: u64,
}

impl GenTask {
    fn ms(&self, s: u64) -> String {
        clock::rfc3339_millis(self.t + Duration::from_secs(s))
    }

    fn sec(&self, s: u64) -> String {
        clock::rfc3339_seconds(self.t + Duration::from_secs(s))
    }

    fn path(&self, folder: &str) -> String {
        format!("work/collaboration/{folder}/{}.yaml", self.id)
    }

    /// The file as the daemon leaves it: the inbox text with the lifecycle keys it adds.
    fn file_text(&self, inbox_text: &str, attempts: u32) -> String {
        let c = self.sec(0);
        if attempts == 0 {
            return format!("{inbox_text}status: assigned\ncreated_at: {c}\nassigned_at: {c}\n");
        }
        let (start, end) = attempt_window(attempts, attempts);
        format!(
            "{inbox_text}status: done\ncreated_at: {c}\nassigned_at: {c}\nstarted_at: {}\ncompleted_at: {}\n\
             result:\n  summary: done\n",
            self.sec(start),
            self.sec(end)
        )
    }

    /// Intake: `task_received`, then `task_assigned` moving the inbox file to assigned/ with
    /// the edits and task metadata `command::intake` records.
    fn push_intake(&self, log: &mut LogWriter, inbox_text: &str, task: &Task) -> Res<()> {
        let inbox = self.path("inbox");
        let mut ev = Event::task("task_received", &self.id);
        ev.agent = Some("bench".into());
        ev.path = Some(inbox.clone());
        log.push(ev, &self.ms(0))?;
        let mut ev = move_event(
            "task_assigned",
            &self.id,
            "new",
            "assigned",
            &inbox,
            &self.path("assigned/bench"),
            self.ino,
        );
        ev.src_crc = Some(crc32c::crc32c(inbox_text.as_bytes()));
        ev.edits = edits(&[
            ("status", json!("assigned")),
            ("created_at", json!(self.sec(0))),
            ("assigned_at", json!(self.sec(0))),
        ]);
        log.push(ev.with_data("task", task_meta(task)), &self.ms(0))
    }

    /// Attempt `a` of `attempts`: started + execution start + execution complete, then a
    /// retry (exit 1) or, for the last, completed (exit 0).
    fn push_attempt(&self, log: &mut LogWriter, a: u32, attempts: u32) -> Res<()> {
        let (id, assigned) = (&self.id, self.path("assigned/bench"));
        let (start, end) = attempt_window(a, attempts);
        let ino = self.ino + 1;
        let mut ev = move_event(
            "task_started",
            id,
            "assigned",
            "in_progress",
            &assigned,
            &assigned,
            ino,
        );
        ev.attempt = Some(a);
        ev.edits = edits(&[
            ("status", json!("in_progress")),
            ("started_at", json!(self.sec(start))),
        ]);
        log.push(ev, &self.ms(start))?;
        let mut ev = Event::task("execution_start", id);
        ev.agent = Some("bench".into());
        ev.attempt = Some(a);
        ev.pid = Some(40_000 + (self.i % 20_000) as u32);
        ev.pid_start = Some(500_000 + self.i as u64);
        log.push(ev, &self.ms(start))?;
        let exit = i32::from(a < attempts);
        let mut ev = Event::task("execution_complete", id);
        ev.agent = Some("bench".into());
        ev.attempt = Some(a);
        ev.exit_code = Some(exit);
        ev.duration_ms = Some((end - start) * 1000);
        ev.log_paths = Some(
            ["prompt.md", "stdout.log", "stderr.log"]
                .iter()
                .map(|f| format!("work/logs/{id}/{a}/{f}"))
                .collect(),
        );
        log.push(ev, &self.ms(end))?;
        if exit != 0 {
            let mut ev = move_event(
                "task_retry_scheduled",
                id,
                "in_progress",
                "assigned",
                &assigned,
                &assigned,
                ino,
            );
            ev.attempt = Some(a);
            ev.exit_code = Some(exit);
            ev.error = Some("the agent exited with code 1".into());
            ev.edits = edits(&[("status", json!("assigned"))]);
            return log.push(ev.with_data("retry_at", json!(self.sec(end + 1))), &self.ms(end));
        }
        let mut ev = move_event(
            "task_completed",
            id,
            "in_progress",
            "done",
            &assigned,
            &self.path("done/bench"),
            ino,
        );
        ev.attempt = Some(a);
        ev.edits = edits(&[
            ("completed_at", json!(self.sec(end))),
            ("result", json!({"summary": "done"})),
            ("status", json!("done")),
        ]);
        log.push(ev, &self.ms(end))
    }
}

/// Write `n` tasks and their log, shaped like the daemon's own: every task was received and
/// assigned; most then failed once (or twice) and were done on the retry, each attempt
/// started + execution start + execution complete, a retry in between, completed at the end
/// (`attempts_of`); every tenth is still in `assigned/bench/`. The task metadata in the
/// events comes from the library (`task_meta` of the parsed file), so a start-up finds
/// nothing to record.
fn generate_history(root: &Path, n: usize) -> Res<History> {
    let (done, assigned_dir) = (collab(root, "done/bench"), collab(root, "assigned/bench"));
    mkdirs(&[&done, &assigned_dir])?;
    let file = File::create(events_path(root)).map_err(io("cannot create the event log"))?;
    let mut log = LogWriter {
        out: BufWriter::with_capacity(1 << 20, file),
        seq: 0,
    };
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
    let mut assigned = 0;
    for i in 0..n {
        let g = GenTask {
            id: format!("old-{i:06}"),
            i,
            t: epoch + Duration::from_secs(i as u64 * 60),
            ino: 1_000_000 + i as u64,
        };
        let attempts = attempts_of(i);
        let inbox_text = task_text(&g.id, "bench", i);
        let text = g.file_text(&inbox_text, attempts);
        let task = parse_task(&text)?;
        let dir = if attempts == 0 {
            assigned += 1;
            &assigned_dir
        } else {
            &done
        };
        fs::write(dir.join(format!("{}.yaml", g.id)), &text).map_err(io(&g.id))?;
        g.push_intake(&mut log, &inbox_text, &task)?;
        for a in 1..=attempts {
            g.push_attempt(&mut log, a, attempts)?;
        }
    }
    log.out.flush().map_err(io("cannot write the generated log"))?;
    Ok(History {
        events: log.seq,
        assigned,
    })
}

// ---------------------------------------------------------------------------------------------
// inotify, for latency without polling

fn inotify() -> Res<Inotify> {
    Inotify::new().map_err(|e| format!("inotify_init1: {e}"))
}

/// The events (watch, file name) that arrive within `timeout`; empty when none did.
fn events(ino: &mut Inotify, timeout: Duration) -> Res<Vec<(i32, String)>> {
    Ok(ino
        .read_within(timeout)
        .map_err(|e| format!("inotify read: {e}"))?
        .into_iter()
        .map(|ev| (ev.wd, ev.name.to_string_lossy().into_owned()))
        .collect())
}

fn watch(ino: &Inotify, dir: &Path, mask: u32) -> Res<i32> {
    ino.watch(dir, mask)
        .map_err(|e| format!("inotify_add_watch {}: {e}", dir.display()))
}
