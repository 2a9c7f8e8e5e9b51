//! The statistics API against a running VM: every endpoint and its schema,
//! curl, bad input, and 16 clients x 1,000 requests while the guest runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vmm::stats_cmd::client;

use crate::harness::{guest, spawn, wait};
use crate::openapi::OpenApi;
use crate::prometheus::parse_exposition;
use crate::KvmTest;

pub const TESTS: &[(&str, KvmTest)] = &[
    (
        "api::endpoints_schema_curl_and_bad_input_on_a_running_vm",
        endpoints,
    ),
    ("api::sixteen_clients_while_the_guest_runs", sixteen_clients),
];

fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vmm-kvm-{tag}-{}.sock", std::process::id()))
}

/// Waits until the VM's API answers.
fn wait_for_api(sock: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if client::request(sock, "GET", "/v1/vm", None).is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("API at {} never answered", sock.display()))
}

fn get_json(sock: &Path, path: &str) -> Result<(u16, Value), String> {
    let r = client::request(sock, "GET", path, None).map_err(|e| format!("GET {path}: {e}"))?;
    let v = serde_json::from_slice(&r.body).map_err(|e| format!("GET {path}: not JSON: {e}"))?;
    Ok((r.status, v))
}

fn endpoints() -> Result<(), String> {
    let sock = socket_path("api");
    let sock_arg = sock.to_string_lossy().into_owned();
    let kernel = guest("mux-steady.elf");
    let started = Instant::now();
    let child = spawn(&[
        "run",
        "--cpu-vendor",
        "intel",
        "--kernel",
        kernel.to_str().ok_or("path")?,
        "--host-pmu",
        "sim:intel-4gp-3fixed",
        "--api-sock",
        &sock_arg,
        "--cmdline",
        "gp=8 ticks=10000000000",
        "--timeout",
        "60",
    ])?;
    let checks = (|| -> Result<(), String> {
        wait_for_api(&sock)?;
        // Let the guest program its counters and vCPUs publish.
        std::thread::sleep(Duration::from_millis(800));
        let api = OpenApi::load();
        for (url, template) in [
            ("/v1/vm", "/v1/vm"),
            ("/v1/vcpus", "/v1/vcpus"),
            ("/v1/vcpus/0/pmu", "/v1/vcpus/{id}/pmu"),
            ("/v1/host-pmus", "/v1/host-pmus"),
            ("/v1/host-pmus/cpu", "/v1/host-pmus/{name}"),
            (
                "/v1/host-pmus/cpu/timeline",
                "/v1/host-pmus/{name}/timeline",
            ),
            ("/v1/exits", "/v1/exits"),
        ] {
            let (status, v) = get_json(&sock, url)?;
            if status != 200 {
                return Err(format!("GET {url}: {status} {v}"));
            }
            api.check(template, "get", "200", &v);
        }
        // What the VM really did: counters rotating, MSR exits recorded.
        let (_, pmu) = get_json(&sock, "/v1/vcpus/0/pmu")?;
        let counters = pmu["stats"]["counters"].as_array().ok_or("no counters")?;
        if counters.len() != 8
            || !counters
                .iter()
                .all(|c| c["running_pct"].as_f64().is_some_and(|p| p < 100.0))
        {
            return Err(format!("8 rotating counters expected: {pmu}"));
        }
        let (_, exits) = get_json(&sock, "/v1/exits")?;
        if exits["msrs"]
            .as_array()
            .is_none_or(|m| m.iter().all(|m| m["wrmsr"] == 0))
        {
            return Err(format!("no trapped WRMSR recorded: {exits}"));
        }
        // PUT changes the interval live; invalid values are refused.
        let r = client::request(
            &sock,
            "PUT",
            "/v1/host-pmus/cpu",
            Some(br#"{"mux_interval_ms": 8}"#),
        )
        .map_err(|e| e.to_string())?;
        let (_, pmus) = get_json(&sock, "/v1/host-pmus")?;
        if r.status != 200 || pmus["host_pmus"][0]["mux_interval_ms"] != 8 {
            return Err(format!("PUT interval: {} then {pmus}", r.status));
        }
        for (method, path, body, want) in [
            (
                "PUT",
                "/v1/host-pmus/cpu",
                &br#"{"mux_interval_ms": 0}"#[..],
                400,
            ),
            ("PUT", "/v1/host-pmus/cpu", &b"{not json"[..], 400),
            (
                "PUT",
                "/v1/host-pmus/gpu",
                &br#"{"mux_interval_ms": 5}"#[..],
                404,
            ),
            ("DELETE", "/v1/vm", &b""[..], 405),
            ("GET", "/v1/vcpus/7/pmu", &b""[..], 404),
            ("GET", "/nothing", &b""[..], 404),
        ] {
            let r = client::request(&sock, method, path, (!body.is_empty()).then_some(body))
                .map_err(|e| format!("{method} {path}: {e}"))?;
            let v: Value =
                serde_json::from_slice(&r.body).map_err(|e| format!("{method} {path}: {e}"))?;
            if r.status != want || !v["error"].is_string() {
                return Err(format!(
                    "{method} {path}: {} {v}, want {want} with an error body",
                    r.status
                ));
            }
        }
        // Prometheus text parses and carries the labels.
        let r = client::request(&sock, "GET", "/metrics", None).map_err(|e| e.to_string())?;
        let samples = parse_exposition(&String::from_utf8_lossy(&r.body));
        let labelled = samples.iter().any(|(_, labels, _)| {
            ["vcpu", "counter", "event", "host_pmu"]
                .iter()
                .all(|k| labels.iter().any(|(l, _)| l == k))
        });
        if !labelled {
            return Err("no metric with vcpu, counter, event and host_pmu labels".into());
        }
        // curl over the Unix socket, like an operator would.
        let out = Command::new("curl")
            .args([
                "-s",
                "-f",
                "--unix-socket",
                &sock_arg,
                "http://localhost/v1/vm",
            ])
            .output()
            .map_err(|e| format!("curl: {e} (install curl)"))?;
        let v: Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("curl output: {e}"))?;
        if !out.status.success() || v["state"] != "running" {
            return Err(format!("curl /v1/vm: {v}"));
        }
        Ok(())
    })();
    let run = wait(child, started)?;
    checks?;
    run.expect_status(0)?;
    if sock.exists() {
        return Err("API socket left behind".into());
    }
    Ok(())
}

fn sixteen_clients() -> Result<(), String> {
    let sock = socket_path("load");
    let sock_arg = sock.to_string_lossy().into_owned();
    let kernel = guest("progress.elf");
    let started = Instant::now();
    let child = spawn(&[
        "run",
        "--cpu-vendor",
        "intel",
        "--kernel",
        kernel.to_str().ok_or("path")?,
        "--vcpus",
        "2",
        "--host-pmu",
        "sim:intel-4gp-3fixed",
        "--api-sock",
        &sock_arg,
        "--cmdline",
        "ticks=40000000000",
        "--timeout",
        "120",
    ])?;
    let load = (|| -> Result<usize, String> {
        wait_for_api(&sock)?;
        let paths = [
            "/v1/vm",
            "/v1/vcpus",
            "/v1/vcpus/1/pmu",
            "/v1/host-pmus",
            "/v1/exits",
            "/metrics",
        ];
        let clients: Vec<_> = (0..16)
            .map(|t| {
                let sock = sock.clone();
                std::thread::spawn(move || -> Result<usize, String> {
                    for i in 0..1000 {
                        let p = paths[(i + t) % paths.len()];
                        let r = client::request(&sock, "GET", p, None)
                            .map_err(|e| format!("{p}: {e}"))?;
                        if r.status != 200 {
                            return Err(format!("{p}: {}", r.status));
                        }
                    }
                    Ok(1000)
                })
            })
            .collect();
        let mut answered = 0;
        for c in clients {
            answered += c.join().map_err(|_| "client thread panicked")??;
        }
        let (_, vm) = get_json(&sock, "/v1/vm")?;
        if vm["state"] != "running" {
            return Err(format!("the guest finished before the load did: {vm}"));
        }
        Ok(answered)
    })();
    let run = wait(child, started)?;
    let answered = load?;
    run.expect_status(0)?;
    if answered != 16_000 {
        return Err(format!("{answered} of 16000 requests answered"));
    }
    // Both vCPUs made progress under the load.
    let progressed = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("progress cpu") && !l.contains(" units 0 "))
        .count();
    if progressed != 2 {
        return Err(format!("guest progress:\n{}", run.stdout));
    }
    Ok(())
}
