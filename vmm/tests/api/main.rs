//! Statistics API tests that need no VM: the server over a fake
//! `StatsSource` built from real vPMU pieces (simulated host PMU).

mod fake;
#[path = "../common/openapi.rs"]
mod openapi;
#[path = "../common/prometheus.rs"]
mod prometheus;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vmm::api::{self, ApiServer};
use vmm::stats_cmd::client::{self, HttpResponse};

use fake::FakeSource;
use openapi::OpenApi;
use prometheus::parse_exposition;

// ---------------------------------------------------------------- helpers

fn tmpdir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "vmm-api-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn server() -> (ApiServer, PathBuf, Arc<FakeSource>) {
    let src = FakeSource::new("intel-4gp-3fixed", 2, 40);
    let path = tmpdir().join("api.sock");
    let s = api::spawn(&path, src.clone()).expect("spawn");
    (s, path, src)
}

fn get(sock: &Path, path: &str) -> HttpResponse {
    client::request(sock, "GET", path, None).expect("request")
}

fn put(sock: &Path, path: &str, body: &str) -> HttpResponse {
    client::request(sock, "PUT", path, Some(body.as_bytes())).expect("request")
}

/// Sends raw bytes, returns the raw response (read until close).
fn raw(sock: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body_of(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("")
}

fn assert_error_body(body: &[u8]) {
    let v: Value = serde_json::from_slice(body).expect("JSON error body");
    assert!(v["error"].is_string(), "{v}");
    OpenApi::load().check("/v1/vm", "get", "default", &v);
}

fn assert_alive(sock: &Path) {
    let r = get(sock, "/v1/vm");
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------- OpenAPI

// ---------------------------------------------------------------- tests

#[test]
fn every_endpoint_matches_the_openapi_schema() {
    let (_s, sock, _src) = server();
    let api = OpenApi::load();
    let cases = [
        ("/v1/vm", "/v1/vm"),
        ("/v1/vcpus", "/v1/vcpus"),
        ("/v1/vcpus/0/pmu", "/v1/vcpus/{id}/pmu"),
        ("/v1/vcpus/1/pmu", "/v1/vcpus/{id}/pmu"),
        ("/v1/host-pmus", "/v1/host-pmus"),
        ("/v1/host-pmus/cpu", "/v1/host-pmus/{name}"),
        (
            "/v1/host-pmus/cpu/timeline",
            "/v1/host-pmus/{name}/timeline",
        ),
        ("/v1/exits", "/v1/exits"),
    ];
    for (url, template) in cases {
        let r = get(&sock, url);
        assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
        let v: Value = serde_json::from_slice(&r.body).expect("JSON");
        api.check(template, "get", "200", &v);
    }
    let r = put(&sock, "/v1/host-pmus/cpu", r#"{"mux_interval_ms": 9}"#);
    assert_eq!(r.status, 200);
    api.check(
        "/v1/host-pmus/{name}",
        "put",
        "200",
        &serde_json::from_slice(&r.body).unwrap(),
    );
    let r = get(&sock, "/metrics");
    assert_eq!(r.status, 200);

    // The content is what the multiplexer did: 7 GP + 3 fixed counters on
    // a 4 + 3 PMU rotate; the history is recorded.
    let v: Value = serde_json::from_slice(&get(&sock, "/v1/vcpus/0/pmu").body).unwrap();
    let counters = v["stats"]["counters"].as_array().unwrap();
    assert_eq!(counters.len(), 10, "{v}");
    assert!(counters
        .iter()
        .any(|c| c["running_pct"].as_f64().unwrap() < 100.0));
    assert_eq!(v["guest"]["gp"][0]["select"]["event"], 0x3C);
    assert_eq!(v["guest"]["gp"][0]["event_name"], "cycles");
    let pmus: Value = serde_json::from_slice(&get(&sock, "/v1/host-pmus").body).unwrap();
    assert!(pmus["host_pmus"][0]["rotations"].as_u64().unwrap() >= 40);
    let t: Value = serde_json::from_slice(&get(&sock, "/v1/host-pmus/cpu/timeline").body).unwrap();
    let entries = t["entries"].as_array().unwrap();
    assert!(entries.len() > 40, "{}", entries.len());
    assert!(entries.iter().any(|e| e["kind"] == "rotation"));
    assert!(entries.iter().any(|e| e["vcpu"] == 1));
    let e: Value = serde_json::from_slice(&get(&sock, "/v1/exits").body).unwrap();
    assert_eq!(
        e["msrs"].as_array().unwrap().len(),
        35 + 24,
        "Intel and AMD PMU MSRs"
    );
    assert_eq!(e["pmis_injected"], 2);
    assert!(e["handling_ns"]["p99"].as_u64().unwrap() >= e["handling_ns"]["p50"].as_u64().unwrap());
}

#[test]
fn curl_over_the_unix_socket() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n*** SKIPPED curl_over_the_unix_socket: curl is not installed ***\n");
        return;
    }
    let (_s, sock, src) = server();
    let sock_s = sock.to_str().unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--unix-socket",
            sock_s,
            "-w",
            "\n%{http_code}",
            "http://localhost/v1/vm",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{text}");
    OpenApi::load().check("/v1/vm", "get", "200", &serde_json::from_str(body).unwrap());
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--unix-socket",
            sock_s,
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"mux_interval_ms": 17}"#,
            "-w",
            "\n%{http_code}",
            "http://localhost/v1/host-pmus/cpu",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200"), "{text}");
    assert_eq!(src.pmus[0].interval_ms(), 17);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--unix-socket", sock_s, "http://localhost/metrics"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("vmm_counter_raw_total{"));
}

#[test]
fn put_on_a_pmu_that_never_rotates_is_a_conflict() {
    let src = FakeSource::new("no-pmu", 1, 5);
    let path = tmpdir().join("norotate.sock");
    let _s = api::spawn(&path, src.clone()).expect("spawn");
    let before = src.pmus[0].interval_ms();
    let r = put(&path, "/v1/host-pmus/software", r#"{"mux_interval_ms": 8}"#);
    assert_eq!(r.status, 409);
    assert_error_body(&r.body);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("never rotates"),
        "{v}"
    );
    OpenApi::load().check("/v1/host-pmus/{name}", "put", "409", &v);
    assert_eq!(src.pmus[0].interval_ms(), before);
}

#[test]
fn stats_snapshot_matches_its_schema() {
    let (_s, sock, _src) = server();
    let snap = vmm::stats_cmd::fetch(&sock).unwrap();
    let v = serde_json::to_value(&snap).unwrap();
    OpenApi::load().check_component("StatsSnapshot", &v);
}

/// `vmm stats ARGS` (the binary) against `sock`: status and stdout.
fn vmm_stats(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmm"))
        .arg("stats")
        .arg("--api-sock")
        .arg(sock)
        .args(args)
        .output()
        .expect("run vmm stats");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stats_aggregates_per_event_or_shows_each_vcpu() {
    let (_s, sock, _src) = server();
    let (st, agg, _) = vmm_stats(&sock, &[]);
    assert_eq!(st, 0);
    let (st, per, _) = vmm_stats(&sock, &["-A"]);
    assert_eq!(st, 0);
    let counted = |t: &str, ev: &str| {
        t.lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(ev))
            .count()
    };
    // Two vCPUs counting cycles on gp0 and fixed1: one line summed, four
    // per counter.
    assert_eq!(counted(&agg, "cycles"), 1, "{agg}");
    assert_eq!(counted(&per, "cycles"), 4, "{per}");
    assert!(per.contains("vcpu1") && !agg.contains("vcpu1"));
    let value = |t: &str| -> Vec<u64> {
        t.lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("cycles"))
            .filter_map(|l| l.split_whitespace().next()?.replace(',', "").parse().ok())
            .collect()
    };
    assert_eq!(value(&agg)[0], value(&per).iter().sum::<u64>());
}

#[test]
fn stats_interval_csv_and_json_lines() {
    let (_s, sock, _src) = server();
    let (st, out, err) = vmm_stats(&sock, &["-I", "100", "--interval-count", "2"]);
    assert_eq!(st, 0, "{err}");
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("#"), "{out}");
    let times: std::collections::BTreeSet<String> = lines
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(times.len(), 2, "two intervals:\n{out}");
    for t in &times {
        let t: f64 = t.parse().unwrap();
        assert!(t > 0.05 && t < 5.0, "{t}");
    }
    let (st, out, _) = vmm_stats(
        &sock,
        &["-I", "100", "--interval-count", "1", "-x", ";", "-A"],
    );
    assert_eq!(st, 0);
    assert!(!out.is_empty());
    for l in out.lines() {
        let f: Vec<&str> = l.split(';').collect();
        assert_eq!(f.len(), 10, "{l}");
        assert!(
            f[0].parse::<f64>().is_ok() && f[1].starts_with("vcpu"),
            "{l}"
        );
    }
    let (st, out, _) = vmm_stats(&sock, &["-x", ","]);
    assert_eq!(st, 0);
    assert!(out.lines().all(|l| l.split(',').count() == 7), "{out}");
    assert!(
        out.lines().any(|l| l.split(',').nth(2) == Some("cycles")),
        "{out}"
    );
    let (st, out, _) = vmm_stats(&sock, &["-I", "100", "--interval-count", "3", "--json"]);
    assert_eq!(st, 0);
    let api = OpenApi::load();
    let objs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(objs.len(), 3);
    for o in &objs {
        assert!(o["time_s"].as_f64().is_some());
        api.check_component("StatsSnapshot", o);
    }
}

#[test]
fn put_changes_the_interval_live_and_validates() {
    let (_s, sock, src) = server();
    let r = put(&sock, "/v1/host-pmus/cpu", r#"{"mux_interval_ms": 8}"#);
    assert_eq!(r.status, 200);
    assert_eq!(src.pmus[0].interval_ms(), 8);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["mux_interval_ms"], 8);
    for (body, status) in [
        (r#"{"mux_interval_ms": 0}"#, 400),
        (r#"{"mux_interval_ms": 10001}"#, 400),
        (r#"{"mux_interval_ms": -1}"#, 400),
        (r#"{"mux_interval_ms": 2.5}"#, 400),
        (r#"{"mux_interval_ms": "5"}"#, 400),
        (r#"{"mux_interval_ms": 5, "x": 1}"#, 400),
        (r#"{}"#, 400),
        (r#"{"mux_interval_ms": 5"#, 400),
        ("", 400),
        ("\u{0}\u{1}", 400),
        (r#"{"mux_interval_ms": 99999999999999999999999}"#, 400),
    ] {
        let r = put(&sock, "/v1/host-pmus/cpu", body);
        assert_eq!(r.status, status, "{body}");
        assert_error_body(&r.body);
    }
    assert_eq!(src.pmus[0].interval_ms(), 8, "rejected PUTs change nothing");
    let r = put(&sock, "/v1/host-pmus/gpu", r#"{"mux_interval_ms": 8}"#);
    assert_eq!(r.status, 404);
    assert_error_body(&r.body);
    let r = put(&sock, "/v1/host-pmus/cpu", r#"{"mux_interval_ms": 10000}"#);
    assert_eq!(r.status, 200);
    let r = put(&sock, "/v1/host-pmus/cpu", r#"{"mux_interval_ms": 1}"#);
    assert_eq!(r.status, 200);
    assert_eq!(src.pmus[0].interval_ms(), 1);
}

#[test]
fn bad_input_gets_the_right_status_and_the_server_keeps_running() {
    let (_s, sock, _src) = server();
    let big_header = format!(
        "GET /v1/vm HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let many_headers = format!("GET /v1/vm HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(100));
    let big_body = format!(
        "PUT /v1/host-pmus/cpu HTTP/1.1\r\nContent-Length: {}\r\n\r\n{}",
        70_000,
        " ".repeat(70_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage", b"\x00\x01\x02 hello\r\n\r\n".to_vec(), 400),
        ("no version", b"GET /v1/vm\r\n\r\n".to_vec(), 400),
        (
            "bad header",
            b"GET /v1/vm HTTP/1.1\r\nNo Colon\r\n\r\n".to_vec(),
            400,
        ),
        (
            "not a path",
            b"GET http://x/v1/vm HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad length",
            b"PUT /v1/host-pmus/cpu HTTP/1.1\r\nContent-Length: -3\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunked",
            b"PUT /v1/host-pmus/cpu HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        ("truncated", b"GET /v1/vm HTTP/1.1\r\nHost: x".to_vec(), 400),
        (
            "short body",
            b"PUT /v1/host-pmus/cpu HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}".to_vec(),
            400,
        ),
        ("headers too large", big_header.into_bytes(), 431),
        ("too many headers", many_headers.into_bytes(), 431),
        ("body too large", big_body.into_bytes(), 413),
        (
            "unknown path",
            b"GET /v2/nothing HTTP/1.1\r\n\r\n".to_vec(),
            404,
        ),
        (
            "unknown vcpu",
            b"GET /v1/vcpus/99/pmu HTTP/1.1\r\n\r\n".to_vec(),
            404,
        ),
        (
            "bad vcpu id",
            b"GET /v1/vcpus/x/pmu HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "unknown pmu",
            b"GET /v1/host-pmus/gpu/timeline HTTP/1.1\r\n\r\n".to_vec(),
            404,
        ),
        (
            "wrong method",
            b"POST /v1/vm HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
            405,
        ),
        (
            "wrong method pmu",
            b"DELETE /v1/host-pmus/cpu HTTP/1.1\r\n\r\n".to_vec(),
            405,
        ),
        (
            "invalid json",
            b"PUT /v1/host-pmus/cpu HTTP/1.1\r\nContent-Length: 5\r\n\r\n{nope".to_vec(),
            400,
        ),
    ];
    for (what, bytes, status) in cases {
        // Half-close so truncated requests end at EOF instead of timing out.
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let resp = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(status_of(&resp), status, "{what}: {resp}");
        assert_error_body(body_of(&resp).as_bytes());
        if status == 405 {
            assert!(resp.contains("\r\nAllow: GET"), "{what}: {resp}");
        }
        assert_alive(&sock);
    }
    // Keep-alive: an error on a second request of a connection.
    let resp = raw(
        &sock,
        b"GET /v1/vm HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("HTTP/1.1 404"), "{resp}");
    assert_alive(&sock);
}

#[test]
fn slow_and_half_open_clients_time_out_without_blocking_others() {
    let src = FakeSource::new("intel-4gp-3fixed", 1, 4);
    let sock = tmpdir().join("api.sock");
    let _s = ApiServer::start_with(&sock, src, Duration::from_millis(500)).unwrap();
    // A client that sends half a request and stalls.
    let mut slow = UnixStream::connect(&sock).unwrap();
    slow.write_all(b"GET /v1/vm HTTP/1.1\r\nHo").unwrap();
    // A client that sends nothing.
    let mut idle = UnixStream::connect(&sock).unwrap();
    // A client trickling one byte at a time, never finishing in time.
    let trickle = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&sock).unwrap();
            for b in b"GET /v1/vm HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if s.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    // Others are served meanwhile, promptly.
    for _ in 0..20 {
        let t = Instant::now();
        assert_alive(&sock);
        assert!(t.elapsed() < Duration::from_millis(300));
    }
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = String::new();
    let _ = slow.read_to_string(&mut out);
    assert_eq!(status_of(&out), 408, "{out}");
    assert_error_body(body_of(&out).as_bytes());
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    let n = idle.read_to_end(&mut out).unwrap();
    assert_eq!(n, 0, "an idle connection is closed silently");
    let t = trickle.join().unwrap();
    assert_eq!(status_of(&t), 408, "{t}");
    assert_alive(&sock);
}

#[test]
fn sixteen_clients_a_thousand_requests_each() {
    let (_s, sock, _src) = server();
    let paths = [
        "/v1/vm",
        "/v1/vcpus",
        "/v1/vcpus/1/pmu",
        "/v1/host-pmus",
        "/v1/exits",
        "/metrics",
        "/v1/host-pmus/cpu/timeline",
    ];
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                if t % 2 == 0 {
                    // New connection per request.
                    for i in 0..1000 {
                        let p = paths[(i + t) % paths.len()];
                        let r = client::request(&sock, "GET", p, None).expect("request");
                        assert_eq!(r.status, 200, "{p}");
                        assert!(!r.body.is_empty());
                        ok += 1;
                    }
                } else {
                    // One keep-alive connection.
                    let mut s = UnixStream::connect(&sock).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let mut buf = Vec::new();
                    for i in 0..1000 {
                        let p = paths[(i + t) % paths.len()];
                        s.write_all(format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                            .unwrap();
                        // Read one full response (Content-Length framed).
                        loop {
                            if let Some(end) = find_head_end(&buf) {
                                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                                let len: usize = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("Content-Length: "))
                                    .unwrap()
                                    .trim()
                                    .parse()
                                    .unwrap();
                                if buf.len() >= end + len {
                                    assert!(head.starts_with("HTTP/1.1 200"), "{p}: {head}");
                                    buf.drain(..end + len);
                                    break;
                                }
                            }
                            let mut chunk = [0u8; 65536];
                            let n = s.read(&mut chunk).unwrap();
                            assert!(n > 0, "server closed a keep-alive connection");
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let total: usize = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .sum();
    assert_eq!(total, 16_000);
    assert_alive(&sock);
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

#[test]
fn prometheus_output_parses() {
    let (_s, sock, _src) = server();
    let r = get(&sock, "/metrics");
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    let samples = parse_exposition(&text);
    let raw: Vec<_> = samples
        .iter()
        .filter(|s| s.0 == "vmm_counter_raw_total")
        .collect();
    assert_eq!(raw.len(), 20, "10 counters x 2 vCPUs");
    for (_, labels, _) in &raw {
        let keys: Vec<&str> = labels.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(keys, ["vcpu", "counter", "event", "host_pmu"]);
    }
    assert!(raw
        .iter()
        .any(|s| s.1.contains(&("event".into(), "cycles".into())) && s.2 > 0.0));
    for name in [
        "vmm_host_pmu_mux_interval_seconds",
        "vmm_host_pmu_rotations_total",
        "vmm_msr_exits_total",
        "vmm_pmis_injected_total",
        "vmm_pmu_exit_handling_seconds_bucket",
        "vmm_pmu_exit_handling_seconds_count",
        "vmm_counter_running_ratio",
        "vmm_counter_running_seconds_total",
        "vmm_uptime_seconds",
    ] {
        assert!(
            samples.iter().any(|s| s.0 == name),
            "{name} missing:\n{text}"
        );
    }
}

/// A tool the metrics check needs is missing: a failure under CI (which
/// installs it), a loud skip elsewhere.
fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is missing, and CI=true: .ci/run installs it");
    }
    eprintln!(
        "\n*** {what} is missing: the Prometheus parser check is SKIPPED \
         (pip install prometheus_client) ***\n"
    );
}

#[test]
fn metrics_follow_the_prometheus_conventions() {
    use std::io::Write as _;
    let (_s, sock, _src) = server();
    let r = get(&sock, "/metrics");
    assert_eq!(r.status, 200);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/check_metrics.py");
    let child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return missing("python3"),
        Err(e) => panic!("python3: {e}"),
    };
    child.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) {
        return missing("prometheus_client");
    }
    assert!(
        out.status.success(),
        "/metrics breaks the conventions:\n{stdout}{}\n--- exposition\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&r.body)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
}

#[test]
fn socket_mode_stale_socket_and_refusals() {
    let dir = tmpdir();
    let src = FakeSource::new("intel-4gp-3fixed", 1, 2);
    // Mode 0600, removed on drop.
    let path = dir.join("a.sock");
    {
        let _s = api::spawn(&path, src.clone()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Bound in a private directory that is gone again: nothing else in
        // the directory, at no time a socket of another mode.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.sock")]);
        // A live socket is not replaced.
        let e = api::spawn(&path, src.clone()).err().expect("refused");
        assert!(e.to_string().contains("in use"), "{e}");
        assert_alive(&path);
    }
    assert!(!path.exists(), "socket removed on drop");
    // A stale socket is replaced.
    {
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(l);
        assert!(path.exists());
        let _s = api::spawn(&path, src.clone()).expect("stale socket replaced");
        assert_alive(&path);
    }
    // Anything else is refused and left alone.
    let file = dir.join("file");
    std::fs::write(&file, "keep me").unwrap();
    let e = api::spawn(&file, src.clone()).err().expect("refused");
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    let sub = dir.join("subdir");
    std::fs::create_dir(&sub).unwrap();
    assert!(api::spawn(&sub, src.clone()).is_err());
    assert!(sub.is_dir());
    // Missing directory: an error, not a panic.
    assert!(api::spawn(&dir.join("missing/x.sock"), src).is_err());
}

#[test]
fn stats_command_prints_a_table_json_and_timeline() {
    let (_s, sock, src) = server();
    let snap = vmm::stats_cmd::fetch(&sock).unwrap();
    let table = vmm::report::render_table(&snap.vm, &snap.vcpus, &snap.host_pmus);
    eprintln!("{table}");
    assert!(table.contains("Performance counter stats for VM (2 vCPUs"));
    assert!(table.contains("cycles"));
    assert!(table.contains("vcpu1"));
    assert!(
        table.contains("%)"),
        "running percentage of multiplexed counters"
    );
    assert!(table.contains("Host PMUs:"));
    assert!(table.contains("interval"));
    assert!(
        table
            .lines()
            .any(|l| l.contains(',') && l.contains("cycles")),
        "thousands separators"
    );
    let args = |json: bool, timeline: Option<PathBuf>| vmm::stats_cmd::StatsArgs {
        api_sock: Some(sock.clone()),
        json,
        timeline,
        ..Default::default()
    };
    assert_eq!(vmm::stats_cmd::main(&args(false, None)), 0);
    assert_eq!(vmm::stats_cmd::main(&args(true, None)), 0);
    let svg = tmpdir().join("t.svg");
    assert_eq!(vmm::stats_cmd::main(&args(false, Some(svg.clone()))), 0);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"));
    // No lane for a PMU that never rotates.
    let rotating = src.pmus.iter().filter(|p| !p.capacity().unbounded).count();
    assert!(rotating < src.pmus.len(), "the profile has a software PMU");
    assert_eq!(text.matches("lane: ").count(), rotating);
    assert!(text.contains("lane: cpu "));
    assert!(text.contains("vcpu1 gp"));
    // An unreachable socket is an error status, not a panic.
    let gone = vmm::stats_cmd::StatsArgs {
        api_sock: Some(tmpdir().join("none.sock")),
        ..Default::default()
    };
    assert_eq!(vmm::stats_cmd::main(&gone), 1);
}

#[test]
fn timeline_has_one_lane_per_host_pmu() {
    // Two vCPU sets on two profiles: 1 PMU (rotating) + 3 PMUs (hybrid).
    let a = FakeSource::new("intel-4gp-3fixed", 2, 30);
    let b = FakeSource::new("hybrid", 1, 5);
    let mut timelines: Vec<_> = a
        .pmus
        .iter()
        .map(|p| vmm::api::model::Timeline::of(p))
        .collect();
    timelines.extend(b.pmus.iter().map(|p| vmm::api::model::Timeline::of(p)));
    let svg = tmpdir().join("lanes.svg");
    vmm::stats_cmd::timeline::render_svg(&svg, &timelines, vpmu::config::PmuArch::Amd).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(text.matches("lane: ").count(), timelines.len());
    for t in &timelines {
        assert!(
            text.contains(&format!("lane: {} ", t.host_pmu)),
            "{}",
            t.host_pmu
        );
    }
    assert!(text.matches("<rect").count() > 30, "bars drawn");
    // Named as the AMD guest PMU names its counters, as in JSON and tables.
    assert!(
        text.contains("perf_ctr0") && !text.contains(" gp0<"),
        "AMD names"
    );
}

#[test]
fn watch_stops_when_the_vm_goes_away() {
    let (s, sock, _src) = server();
    let args = vmm::stats_cmd::StatsArgs {
        api_sock: Some(sock),
        json: true,
        watch: Some(0.1),
        ..Default::default()
    };
    let t = std::thread::spawn(move || vmm::stats_cmd::main(&args));
    std::thread::sleep(Duration::from_millis(400));
    drop(s);
    assert_eq!(t.join().unwrap(), 0);
}

#[test]
fn the_openapi_checker_is_not_vacuous() {
    let api = OpenApi::load();
    let bad = [
        serde_json::json!({"config": {}, "state": "running", "uptime_ms": 1}),
        serde_json::json!({"host_pmus": [{"name": "cpu"}]}),
        serde_json::json!({"error": 5}),
    ];
    let paths = [
        ("/v1/vm", "200"),
        ("/v1/host-pmus", "200"),
        ("/v1/vm", "default"),
    ];
    for (v, (p, s)) in bad.iter().zip(paths) {
        let r = std::panic::catch_unwind(|| api.check(p, "get", s, v));
        assert!(r.is_err(), "{p} accepted {v}");
    }
}

/// One request on a fresh connection, read to the end: the status, or the
/// error (a reset shows here).
fn try_request(sock: &Path) -> Result<u16, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /v1/vm HTTP/1.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    let resp = String::from_utf8_lossy(&out).into_owned();
    let status = status_of(&resp);
    if status == 503 {
        assert_error_body(body_of(&resp).as_bytes());
    }
    Ok(status)
}

#[test]
fn idle_clients_cannot_lock_the_api() {
    use vmm::api::server::{IDLE_TIMEOUT, RESERVED_CONNECTIONS};
    let (_s, sock, _src) = server();
    // One client takes every slot and sends nothing.
    let opened = Instant::now();
    let held: Vec<UnixStream> = (0..api::MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    // More clients now are refused with a whole 503 (their request read,
    // no reset), or, once a reserved slot frees, served.
    let mut refused = 0;
    for _ in 0..RESERVED_CONNECTIONS {
        match try_request(&sock) {
            Ok(503) => refused += 1,
            Ok(200) => {}
            other => panic!("a client beyond the cap got {other:?}, want 503 or 200"),
        }
    }
    assert!(refused > 0, "no client was refused with every slot taken");
    // A `vmm stats` client gets through well before the ordinary idle
    // connections time out: reserved slots of idle clients free quickly.
    let served = loop {
        if get(&sock, "/v1/vm").status == 200 {
            break opened.elapsed();
        }
        assert!(
            opened.elapsed() < IDLE_TIMEOUT * 3,
            "never served while idle clients held the API"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        served < IDLE_TIMEOUT,
        "served after {served:?}, only once idle connections timed out"
    );
    // The idle connections are closed after the idle timeout.
    let mut first = held.into_iter().next().unwrap();
    first.set_read_timeout(Some(IDLE_TIMEOUT * 5)).unwrap();
    let mut out = Vec::new();
    assert_eq!(first.read_to_end(&mut out).unwrap(), 0);
    assert!(opened.elapsed() < IDLE_TIMEOUT * 5);
    assert_alive(&sock);
}
