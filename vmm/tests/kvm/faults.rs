//! Host failures never stop the VM: injected perf_event_open errors leave
//! degraded guest counters and a running guest; reprogramming leaks no fd.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use vmm::stats_cmd::client;

use crate::harness::{guest, spawn, wait};
use crate::KvmTest;

pub const TESTS: &[(&str, KvmTest)] = &[
    (
        "faults::injected_open_errors_degrade_counters_not_the_vm",
        injected_errors,
    ),
    ("faults::ten_thousand_reprogrammings_leak_no_fd", fd_leak),
];

fn get(sock: &Path, path: &str) -> Option<Value> {
    let r = client::request(sock, "GET", path, None).ok()?;
    serde_json::from_slice(&r.body).ok()
}

/// Polls `path` until `pred` holds, for up to 20 s.
fn poll(sock: &Path, path: &str, pred: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(v) = get(sock, path) {
            if pred(&v) {
                return Ok(v);
            }
            last = v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("GET {path} never matched; last: {last}"))
}

fn injected_errors() -> Result<(), String> {
    for errno in ["ENOENT", "EOPNOTSUPP", "EACCES", "ENOSPC", "EMFILE"] {
        let sock =
            std::env::temp_dir().join(format!("vmm-fault-{errno}-{}.sock", std::process::id()));
        let sock_arg = sock.to_string_lossy().into_owned();
        let kernel = guest("reprogram.elf");
        let started = Instant::now();
        let child = spawn(&[
            "run",
            "--cpu-vendor",
            "intel",
            "--kernel",
            kernel.to_str().ok_or("path")?,
            "--inject-host-fault",
            errno,
            "--api-sock",
            &sock_arg,
            "--cmdline",
            "n=10 ticks=3000000000",
            "--timeout",
            "60",
        ])?;
        let live = (|| -> Result<(), String> {
            let pmu = poll(&sock, "/v1/vcpus/0/pmu", |v| {
                v["stats"]["counters"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["state"] == "degraded"
                            && c["labels"]
                                .as_array()
                                .is_some_and(|l| l.iter().any(|l| l == "unavailable"))
                    })
                })
            })?;
            let (_, vm) = (pmu, get(&sock, "/v1/vm").ok_or("no /v1/vm")?);
            if vm["state"] != "running" {
                return Err(format!("{errno}: VM not running: {vm}"));
            }
            Ok(())
        })();
        let run = wait(child, started)?;
        live.map_err(|e| format!("{errno}: {e}"))?;
        // The guest ran to its end and exited through the debug port.
        run.expect_status(0).map_err(|e| format!("{errno}: {e}"))?;
        if !run.stdout.contains("reprogram: done 10") {
            return Err(format!("{errno}: guest did not finish:\n{}", run.stdout));
        }
        let warnings = run
            .stderr
            .lines()
            .filter(|l| l.contains("degraded"))
            .count();
        if warnings == 0 || warnings > 2 {
            return Err(format!(
                "{errno}: want one log line per degraded counter, got:\n{}",
                run.stderr
            ));
        }
    }
    Ok(())
}

fn fd_count(pid: u32) -> Result<usize, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))
}

fn total_wrmsr(exits: &Value) -> u64 {
    exits["msrs"]
        .as_array()
        .map_or(0, |m| m.iter().filter_map(|m| m["wrmsr"].as_u64()).sum())
}

fn fd_leak() -> Result<(), String> {
    let sock = std::env::temp_dir().join(format!("vmm-fdleak-{}.sock", std::process::id()));
    let sock_arg = sock.to_string_lossy().into_owned();
    let kernel = guest("reprogram.elf");
    let started = Instant::now();
    let child = spawn(&[
        "run",
        "--cpu-vendor",
        "intel",
        "--kernel",
        kernel.to_str().ok_or("path")?,
        "--api-sock",
        &sock_arg,
        "--cmdline",
        "n=10000 ticks=3000000000",
        "--timeout",
        "90",
    ])?;
    let pid = child.id();
    let counts = (|| -> Result<(usize, usize), String> {
        // Phase 1: the counters are programmed, nothing reprogrammed yet.
        poll(&sock, "/v1/exits", |e| (3..10).contains(&total_wrmsr(e)))?;
        std::thread::sleep(Duration::from_millis(300));
        let before = fd_count(pid)?;
        // Phase 2 ended: 10,000 more event-select writes.
        poll(&sock, "/v1/exits", |e| total_wrmsr(e) >= 10_003)?;
        std::thread::sleep(Duration::from_millis(300));
        Ok((before, fd_count(pid)?))
    })();
    let run = wait(child, started)?;
    let (before, after) = counts?;
    run.expect_status(0)?;
    if after > before {
        return Err(format!(
            "{} fds before 10,000 reprogrammings, {} after",
            before, after
        ));
    }
    Ok(())
}
