//! Smoke test of the benchmark program: `agentplane-bench --quick` drives the real daemon and
//! prints a row with a number for every figure. It checks only that the bench ran and produced
//! numbers — never a timing (benchmarks print numbers; tests do not assert on them).

use std::process::Command;

#[test]
fn quick_bench_runs_and_prints_a_number_for_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentplane-bench"))
        .args([
            "--quick",
            "--no-pueue",
            "--daemon",
            env!("CARGO_BIN_EXE_agentplane"),
        ])
        .output()
        .expect("run agentplane-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for figure in [
        "intake throughput",
        "end-to-end throughput",
        "end-to-end, 80 tasks",
        "latency drop → assigned",
        "latency drop → child started",
        "start-up",
        "growth, right after start",
        "growth, steady state",
        "idle cost: CPU",
        "idle cost: RSS",
        "index rebuild",
        "index rebuild vs SQLite insert",
        "index rebuild vs SQLite writing its rows",
        "query status --json",
        "query list --status assigned",
        "query list --status assigned --json",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {figure} |")))
            .unwrap_or_else(|| panic!("no row for `{figure}`:\n{stdout}"));
        let measured = row.split('|').nth(3).unwrap_or_default();
        assert!(
            measured.chars().any(|c| c.is_ascii_digit()),
            "no number measured for `{figure}`: {row}"
        );
    }
}
