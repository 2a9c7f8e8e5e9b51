//! Seccomp: every thread kind runs under its filter, and a syscall outside
//! a thread's list kills the VMM with SIGSYS (`vmm::seccomp`).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmm::seccomp::{ThreadKind, VIOLATE_ENV};

use crate::harness::guest;
use crate::KvmTest;

pub const TESTS: &[(&str, KvmTest)] = &[
    (
        "sandbox::every_thread_runs_under_a_filter_with_no_new_privs",
        every_thread_filtered,
    ),
    (
        "sandbox::a_forbidden_syscall_on_any_thread_kind_kills_the_vmm",
        forbidden_syscall_kills,
    ),
    ("sandbox::seccomp_off_installs_no_filter", seccomp_off),
    (
        "sandbox::a_full_api_refuses_and_serves_under_seccomp",
        full_api_under_seccomp,
    ),
];

fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vmm-kvm-sandbox-{tag}-{}.sock", std::process::id()))
}

/// `vmm run` on the spin guest with the API on `sock`.
fn start(sock: &Path, violate: Option<ThreadKind>, extra: &[&str]) -> Result<Child, String> {
    let kernel = guest("spin.elf");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmm"));
    cmd.args(["run", "--kernel"])
        .arg(&kernel)
        .args(["--vcpus", "2", "--timeout", "30", "--api-sock"])
        .arg(sock)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(kind) = violate {
        cmd.env(VIOLATE_ENV, kind.name());
    }
    cmd.spawn().map_err(|e| format!("spawn vmm: {e}"))
}

/// Waits for the socket to accept a connection (or the child to end).
fn wait_for_socket(sock: &Path, child: &mut Child) -> Result<Option<UnixStream>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            return Ok(None);
        }
        if let Ok(s) = UnixStream::connect(sock) {
            return Ok(Some(s));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{} never accepted", sock.display()))
}

fn wait_with_guard(child: &mut Child) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("vmm still running after 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// `Seccomp:` and `NoNewPrivs:` of every thread of `pid`, by thread name.
fn thread_modes(pid: u32) -> Result<Vec<(String, String, String)>, String> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        out.push((
            comm.trim().to_string(),
            field("Seccomp:"),
            field("NoNewPrivs:"),
        ));
    }
    Ok(out)
}

fn every_thread_filtered() -> Result<(), String> {
    let sock = socket_path("modes");
    let mut child = start(&sock, None, &[])?;
    let result = (|| {
        let mut conn = wait_for_socket(&sock, &mut child)?.ok_or("vmm ended early")?;
        // Hold a connection open so a connection thread exists.
        conn.write_all(b"GET /v1/vm HTTP/1.1\r\nHost: x\r\n\r\n")
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(300));
        let modes = thread_modes(child.id())?;
        for want in ["vmm", "vcpu0", "vcpu1", "api-accept", "api-conn"] {
            let (_, seccomp, nnp) = modes
                .iter()
                .find(|(name, ..)| name == want)
                .ok_or_else(|| format!("no thread {want} in {modes:?}"))?;
            if seccomp != "2" || nnp != "1" {
                return Err(format!(
                    "{want}: Seccomp {seccomp}, NoNewPrivs {nnp}; want 2 (filter) and 1"
                ));
            }
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn forbidden_syscall_kills() -> Result<(), String> {
    for kind in ThreadKind::ALL {
        let sock = socket_path(kind.name());
        let mut child = start(&sock, Some(kind), &[])?;
        // The API threads act only once a client comes: connect and send.
        if matches!(kind, ThreadKind::ApiConnection | ThreadKind::ApiAccept) {
            if let Some(mut conn) = wait_for_socket(&sock, &mut child)? {
                let _ = conn.write_all(b"GET /v1/vm HTTP/1.1\r\nHost: x\r\n\r\n");
            }
        }
        let status = wait_with_guard(&mut child)?;
        let stderr = stderr_of(&mut child);
        if status.signal() != Some(libc::SIGSYS) {
            return Err(format!(
                "{}: a forbidden syscall ended the VMM with {status:?}, want SIGSYS\n{stderr}",
                kind.name()
            ));
        }
        if !stderr.contains(VIOLATE_ENV) {
            return Err(format!(
                "{}: the test hook did not run\n{stderr}",
                kind.name()
            ));
        }
        let _ = std::fs::remove_file(&sock);
    }
    Ok(())
}

fn seccomp_off() -> Result<(), String> {
    let sock = socket_path("off");
    // The hook asks for a forbidden syscall, but with no filter it is an
    // ordinary call: the VM runs until its timeout.
    let mut child = start(&sock, Some(ThreadKind::Vcpu), &["--seccomp", "off"])?;
    let result = (|| {
        wait_for_socket(&sock, &mut child)?.ok_or("vmm ended early")?;
        let modes = thread_modes(child.id())?;
        // A thread that ended while being read shows no status.
        if let Some(t) = modes.iter().find(|(_, s, _)| !s.is_empty() && s != "0") {
            return Err(format!("--seccomp off, yet {t:?} is filtered"));
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Every API slot taken by idle clients (64 connection threads, refusals
/// from the accept thread, reserved slots): all of it within the filters.
fn full_api_under_seccomp() -> Result<(), String> {
    use std::io::Read;
    let sock = socket_path("full");
    let mut child = start(&sock, None, &[])?;
    let result = (|| {
        let first = wait_for_socket(&sock, &mut child)?.ok_or("vmm ended early")?;
        let mut held = vec![first];
        for _ in 1..vmm::api::MAX_CONNECTIONS {
            held.push(UnixStream::connect(&sock).map_err(|e| e.to_string())?);
        }
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let mut s = UnixStream::connect(&sock).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            s.write_all(b"GET /v1/vm HTTP/1.1\r\nConnection: close\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut out = String::new();
            s.read_to_string(&mut out)
                .map_err(|e| format!("read: {e} (after {statuses:?})"))?;
            statuses.push(out.get(9..12).unwrap_or("").to_string());
            std::thread::sleep(Duration::from_millis(50));
        }
        if !statuses.iter().any(|s| s == "503") || !statuses.iter().any(|s| s == "200") {
            return Err(format!("want 503s and 200s, got {statuses:?}"));
        }
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("vmm ended: {st:?}\n{}", stderr_of(&mut child)));
        }
        drop(held);
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
