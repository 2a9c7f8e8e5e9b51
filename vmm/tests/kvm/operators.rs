//! Attaching without planning: every `vmm run` serves its API on a per-VM
//! socket in a private runtime directory; `vmm list` and `vmm stats` find
//! it there. Each test uses its own runtime directory (XDG_RUNTIME_DIR of
//! the children), so VMs of tests running in parallel are not counted.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::{guest, spawn_env, wait, Run};
use crate::KvmTest;

pub const TESTS: &[(&str, KvmTest)] = &[
    (
        "operators::every_run_serves_the_api_in_the_runtime_dir",
        attach_by_default,
    ),
    (
        "operators::a_socket_path_longer_than_sun_path_is_refused",
        long_socket_path,
    ),
];

fn runtime_dir(tag: &str) -> Result<PathBuf, String> {
    let d = std::env::temp_dir().join(format!("vmm-xdg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

fn start_spin(xdg: &Path, extra: &[&str]) -> Result<Child, String> {
    let kernel = guest("spin.elf");
    let mut args = vec![
        "run",
        "--kernel",
        kernel.to_str().ok_or("path")?,
        "--vcpus",
        "1",
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"--timeout") {
        args.extend(["--timeout", "60"]);
    }
    spawn_env(&args, &[("XDG_RUNTIME_DIR", xdg.as_os_str())])
}

fn vmm_in(xdg: &Path, args: &[&str]) -> Result<Run, String> {
    let started = Instant::now();
    wait(
        spawn_env(args, &[("XDG_RUNTIME_DIR", OsStr::new(xdg))])?,
        started,
    )
}

fn wait_for(path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} never appeared", path.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn stop(child: Child) -> Result<Run, String> {
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait(child, Instant::now())
}

fn mode(p: &Path) -> Result<u32, String> {
    std::fs::symlink_metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .map_err(|e| format!("{}: {e}", p.display()))
}

fn attach_by_default() -> Result<(), String> {
    let xdg = runtime_dir("attach")?;
    let dir = xdg.join("vmm");
    // A socket left by a VM gone (PIDs above pid_max never exist).
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let stale = dir.join(format!("{}.sock", 1u32 << 23));
    std::fs::write(&stale, b"").map_err(|e| e.to_string())?;

    let a = start_spin(&xdg, &[])?;
    let sock_a = dir.join(format!("{}.sock", a.id()));
    wait_for(&sock_a)?;
    if mode(&dir)? != 0o700 || mode(&sock_a)? != 0o600 {
        return Err(format!(
            "runtime dir {:o}, socket {:o}, want 700 and 600",
            mode(&dir)?,
            mode(&sock_a)?
        ));
    }
    if stale.exists() {
        return Err("the stale socket of a dead PID was not removed".into());
    }
    // One VM: `vmm stats` attaches to it with no argument.
    let stats = vmm_in(&xdg, &["stats"])?;
    stats.expect_status(0)?;
    if !stats
        .stdout
        .contains("Performance counter stats for VM (1 vCPU")
    {
        return Err(format!("stats without --api-sock:\n{}", stats.stdout));
    }
    // `--api-sock none`: no socket.
    let quiet = start_spin(&xdg, &["--api-sock", "none"])?;
    // Another one with the default: two VMs listed.
    let b = start_spin(&xdg, &[])?;
    let sock_b = dir.join(format!("{}.sock", b.id()));
    wait_for(&sock_b)?;
    std::thread::sleep(Duration::from_millis(300));
    let quiet_sock = dir.join(format!("{}.sock", quiet.id()));
    let list = vmm_in(&xdg, &["list"])?;
    list.expect_status(0)?;
    let rows: Vec<&str> = list.stdout.lines().skip(1).collect();
    let has = |pid: u32, sock: &Path| {
        rows.iter().any(|r| {
            r.split_whitespace().next() == Some(&pid.to_string())
                && r.contains(" 1 ")
                && r.ends_with(&*sock.to_string_lossy())
        })
    };
    if rows.len() != 2 || !has(a.id(), &sock_a) || !has(b.id(), &sock_b) {
        return Err(format!(
            "vmm list, want VMs {} and {}:\n{}",
            a.id(),
            b.id(),
            list.stdout
        ));
    }
    if !list.stdout.starts_with(&format!("{:>8}", "PID")) || !list.stdout.contains("UPTIME") {
        return Err(format!("vmm list header:\n{}", list.stdout));
    }
    // Two VMs: `vmm stats` lists them and asks; --pid chooses.
    let ask = vmm_in(&xdg, &["stats"])?;
    ask.expect_status(2)?;
    if !ask.stderr.contains("--pid") || !ask.stderr.contains(&a.id().to_string()) {
        return Err(format!("stats with two VMs:\n{}", ask.stderr));
    }
    let chosen = vmm_in(&xdg, &["stats", "--pid", &b.id().to_string()])?;
    chosen.expect_status(0)?;
    if quiet_sock.exists() {
        return Err("--api-sock none still made a socket".into());
    }
    for (child, sock) in [(a, sock_a), (b, sock_b)] {
        stop(child)?.expect_status(128 + libc::SIGTERM)?;
        if sock.exists() {
            return Err(format!("{} left behind", sock.display()));
        }
    }
    stop(quiet)?;
    let none = vmm_in(&xdg, &["stats"])?;
    none.expect_status(1)?;
    if !none.stderr.contains("no running VM") {
        return Err(format!("stats with no VM:\n{}", none.stderr));
    }
    // --stats-json: the `vmm stats --json` schema plus the exit.
    let json = xdg.join("stats.json");
    let json_arg = json.to_string_lossy().into_owned();
    let t = start_spin(&xdg, &["--stats-json", &json_arg, "--timeout", "0.5"])?;
    wait(t, Instant::now())?.expect_status(124)?;
    let text = std::fs::read_to_string(&json).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    crate::openapi::OpenApi::load().check_component("StatsFile", &v);
    if v["exit"]["reason"] != "timeout" || v["exit"]["status"] != 124 {
        return Err(format!("stats file exit: {}", v["exit"]));
    }
    let _ = std::fs::remove_dir_all(&xdg);
    Ok(())
}

fn long_socket_path() -> Result<(), String> {
    let xdg = runtime_dir("long")?;
    let long = xdg.join(format!("{}.sock", "s".repeat(110)));
    let long_arg = long.to_string_lossy().into_owned();
    let started = Instant::now();
    let run = start_spin(&xdg, &["--api-sock", &long_arg])?;
    let run = wait(run, started)?;
    run.expect_status(2)?;
    crate::harness::one_line_error(&run)?;
    if !run.stderr.contains("sun_path") {
        return Err(format!("no reason given:\n{}", run.stderr));
    }
    // --stats-json that cannot be written: refused before the guest runs.
    let run = vmm_in(
        &xdg,
        &[
            "run",
            "--stats-json",
            "/nonexistent-dir/stats.json",
            "--timeout",
            "30",
        ],
    )?;
    run.expect_status(2)?;
    crate::harness::one_line_error(&run)?;
    if !run.stderr.contains("--stats-json") || run.elapsed > Duration::from_secs(5) {
        return Err(format!("stats-json refusal:\n{}", run.stderr));
    }
    let _ = std::fs::remove_dir_all(&xdg);
    Ok(())
}
