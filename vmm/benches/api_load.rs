//! The guest's slowdown while the statistics API is under load: the
//! `progress` guest counts fixed work units in a fixed TSC time with no
//! API, with the API idle, and with 16 clients requesting as fast as they
//! can. Needs /dev/kvm; run with `cargo bench -p vmm --bench api_load`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm::stats_cmd::client;

const TICKS: &str = "ticks=6000000000";
const ROUNDS: usize = 3;
const CLIENTS: usize = 16;

fn guest() -> PathBuf {
    Path::new(vmm::guests::DIR).join("progress.elf")
}

/// Work units per vCPU, summed over vCPUs, from the guest's output.
fn units(stdout: &str) -> Option<u64> {
    let per_cpu: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("progress cpu "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    (!per_cpu.is_empty()).then(|| per_cpu.iter().sum())
}

/// One run; with `clients`, that many threads hammer the API until the VM
/// exits. Returns (units, requests answered).
/// `pause`: each client's wait between requests (`ZERO`: flat out).
fn run(vcpus: &str, api: bool, clients: usize, pause: Duration) -> Result<(u64, u64), String> {
    let sock = std::env::temp_dir().join(format!("vmm-bench-{}.sock", std::process::id()));
    let sock_arg = sock.to_string_lossy().into_owned();
    let kernel = guest().to_string_lossy().into_owned();
    let mut args = vec![
        "run",
        "--kernel",
        &kernel,
        "--vcpus",
        vcpus,
        "--cmdline",
        TICKS,
    ];
    // Without API: none at all (every run serves one by default).
    args.extend(["--api-sock", if api { &sock_arg } else { "none" }]);
    let child = Command::new(env!("CARGO_BIN_EXE_vmm"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while api && !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let (sock, done, answered) = (sock.clone(), Arc::clone(&done), Arc::clone(&answered));
            std::thread::spawn(move || {
                let paths = [
                    "/v1/vm",
                    "/v1/vcpus/0/pmu",
                    "/v1/host-pmus",
                    "/v1/exits",
                    "/metrics",
                ];
                let mut i = t;
                while !done.load(Ordering::Relaxed) {
                    if client::request(&sock, "GET", paths[i % paths.len()], None)
                        .is_ok_and(|r| r.status == 200)
                    {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                    std::thread::sleep(pause);
                }
            })
        })
        .collect();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    done.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let u = units(&String::from_utf8_lossy(&out.stdout)).ok_or("no progress lines")?;
    Ok((u, answered.load(Ordering::Relaxed)))
}

fn main() {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        eprintln!("api_load: SKIPPED: /dev/kvm is not available");
        return;
    }
    println!("guest progress (work units in 6e9 TSC ticks, mean of {ROUNDS} runs) under statistics API load");
    println!(
        "{:>6} {:>28} {:>14} {:>10} {:>14}",
        "vCPUs", "setting", "units", "vs no API", "requests/s"
    );
    for vcpus in ["1", "2"] {
        let mut baseline = 0.0;
        let scenarios = [
            ("no API", false, 0, Duration::ZERO),
            ("API idle", true, 0, Duration::ZERO),
            (
                "API, 16 clients x 10 req/s",
                true,
                CLIENTS,
                Duration::from_millis(100),
            ),
            ("API, 16 clients flat out", true, CLIENTS, Duration::ZERO),
        ];
        for (name, api, clients, pause) in scenarios {
            let mut total = (0u64, 0u64);
            let started = Instant::now();
            for _ in 0..ROUNDS {
                match run(vcpus, api, clients, pause) {
                    Ok((u, r)) => total = (total.0 + u, total.1 + r),
                    Err(e) => {
                        eprintln!("api_load: {name}: {e}");
                        return;
                    }
                }
            }
            let units = total.0 as f64 / ROUNDS as f64;
            if !api {
                baseline = units;
            }
            let rate = total.1 as f64 / started.elapsed().as_secs_f64();
            println!(
                "{vcpus:>6} {name:>28} {units:>14.0} {:>9.1}% {rate:>14.0}",
                (units / baseline - 1.0) * 100.0
            );
        }
    }
}
