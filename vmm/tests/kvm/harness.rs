//! Running the `vmm` binary on guest images, for tests that boot guests.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether this machine can run guests: `/dev/kvm` opens read-write.
pub fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Path of a guest image built by `build.rs` (`hello.elf`, `hello.mb.elf`).
pub fn guest(file: &str) -> PathBuf {
    PathBuf::from(vmm::guests::DIR).join(file)
}

/// What one `vmm` run produced.
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Fails with the run's output when `status` is not the expected one.
    pub fn expect_status(&self, want: i32) -> Result<&Self, String> {
        if self.status == Some(want) {
            Ok(self)
        } else {
            Err(format!(
                "exit status {:?}, want {want}\n--- stdout\n{}\n--- stderr\n{}",
                self.status, self.stdout, self.stderr
            ))
        }
    }
}

/// The longest any single `vmm` run may take before the harness kills it:
/// a hung VMM then fails its test instead of hanging the whole run.
const GUARD: Duration = Duration::from_secs(120);

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = r.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Starts `vmm <args>` with piped output.
pub fn spawn(args: &[&str]) -> Result<Child, String> {
    spawn_env(args, &[])
}

/// Starts `vmm <args>` with piped output and `env` added to its environment.
pub fn spawn_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Result<Child, String> {
    Command::new(env!("CARGO_BIN_EXE_vmm"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn vmm: {e}"))
}

/// Waits for a spawned `vmm`, killing it after [`GUARD`].
pub fn wait(mut child: Child, started: Instant) -> Result<Run, String> {
    use std::os::unix::process::ExitStatusExt;
    let out = drain(child.stdout.take().ok_or("no stdout")?);
    let err = drain(child.stderr.take().ok_or("no stderr")?);
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| format!("wait vmm: {e}"))? {
            break st;
        }
        if started.elapsed() > GUARD {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("vmm still running after {GUARD:?}: killed"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Run {
        status: status.code().or_else(|| status.signal().map(|s| 128 + s)),
        stdout: out.join().map_err(|_| "stdout reader panicked")?,
        stderr: err.join().map_err(|_| "stderr reader panicked")?,
        elapsed: started.elapsed(),
    })
}

/// `vmm <args>`, waiting for it to finish.
pub fn vmm(args: &[&str]) -> Result<Run, String> {
    let started = Instant::now();
    wait(spawn(args)?, started)
}

/// `vmm run --kernel <guest> <extra...>`.
pub fn run_guest(file: &str, extra: &[&str]) -> Result<Run, String> {
    let kernel = guest(file);
    let kernel = kernel.to_str().ok_or("non-UTF-8 guest path")?;
    let mut args = vec!["run", "--kernel", kernel];
    args.extend_from_slice(extra);
    vmm(&args)
}

/// Checks that a failed run printed exactly one line on stderr and no panic.
pub fn one_line_error(run: &Run) -> Result<(), String> {
    let lines: Vec<&str> = run.stderr.lines().collect();
    if lines.len() != 1 || run.stderr.contains("panicked") {
        return Err(format!("want one error line, got:\n{}", run.stderr));
    }
    Ok(())
}

/// `vmm run --kernel <guest> <extra...> --stats-json <tmp>`: the run and the
/// final statistics of every vCPU that has a multiplexer.
pub fn run_guest_with_stats(
    file: &str,
    extra: &[&str],
) -> Result<(Run, Vec<vpmu::stats::VcpuStats>), String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let json = std::env::temp_dir().join(format!("vmm-stats-{}-{n}.json", std::process::id()));
    let json_arg = json.to_string_lossy().into_owned();
    let mut args = extra.to_vec();
    args.extend(["--stats-json", json_arg.as_str()]);
    let run = run_guest(file, &args)?;
    let text = std::fs::read_to_string(&json);
    let _ = std::fs::remove_file(&json);
    if run.status != Some(0) {
        // The caller's status check reports the output.
        return Ok((run, Vec::new()));
    }
    let text = text.map_err(|e| format!("stats file: {e}"))?;
    let file: vmm::stats_cmd::StatsFile =
        serde_json::from_str(&text).map_err(|e| format!("stats JSON: {e}"))?;
    if file.exit.reason != "guest-exit" || file.exit.status != 0 {
        return Err(format!(
            "stats file exit {:?}, want guest-exit 0",
            file.exit
        ));
    }
    let stats = file
        .snapshot
        .vcpus
        .into_iter()
        .filter_map(|v| v.stats)
        .collect();
    Ok((run, stats))
}
