//! The VMM foundation: booting, SMP, exit statuses, bad inputs.

use std::time::Duration;

use crate::harness::{guest, one_line_error, run_guest, vmm};
use crate::KvmTest;

pub const TESTS: &[(&str, KvmTest)] = &[
    ("boot::hello_1_vcpu_elf64", || hello("hello.elf", 1)),
    ("boot::serial_to_a_file", serial_file),
    ("boot::hello_4_vcpus_elf64", || hello("hello.elf", 4)),
    ("boot::hello_1_vcpu_multiboot", || hello("hello.mb.elf", 1)),
    ("boot::hello_4_vcpus_multiboot", || hello("hello.mb.elf", 4)),
    ("boot::exit_code_3_elf64", || exit_code("exit-code.elf")),
    ("boot::exit_code_3_multiboot", || {
        exit_code("exit-code.mb.elf")
    }),
    ("boot::triple_fault_is_a_crash", triple_fault),
    ("boot::guest_exception_is_reported", guest_exception),
    ("boot::timeout_stops_a_spinning_guest", timeout),
    ("boot::stop_signals_stop_the_vm_cleanly", sigterm),
    ("boot::default_guest_runs_without_arguments", default_guest),
    ("boot::bad_inputs_exit_2_with_one_line", bad_inputs),
    ("boot::runtime_selftest_4_vcpus", runtime_selftest),
];

/// The guest runtime's own TAP self-test (exceptions, MSR fault recovery,
/// SMP, LAPIC, command line) passes on 4 vCPUs.
fn runtime_selftest() -> Result<(), String> {
    let run = run_guest(
        "selftest.elf",
        &[
            "--vcpus",
            "4",
            "--cmdline",
            "selftest=1 answer=0x2a",
            "--timeout",
            "60",
        ],
    )?;
    run.expect_status(0)?;
    if !run.stdout.lines().any(|l| l.ends_with(" passed, 0 failed")) {
        return Err(format!("no passing summary:\n{}", run.stdout));
    }
    Ok(())
}

/// `--serial FILE`: the guest's output in the file, none on stdout; a
/// file that cannot be created is refused before the guest runs.
fn serial_file() -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("vmm-serial-{}.txt", std::process::id()));
    let arg = path.to_string_lossy().into_owned();
    let run = run_guest("hello.elf", &["--serial", &arg])?;
    run.expect_status(0)?;
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    if !text.contains("hello from cpu 1 of 2") || !run.stdout.is_empty() {
        return Err(format!("serial file:\n{text}\n--- stdout\n{}", run.stdout));
    }
    let run = run_guest("hello.elf", &["--serial", "/nonexistent-dir/serial.txt"])?;
    run.expect_status(2)?;
    one_line_error(&run)?;
    if !run.stderr.contains("--serial") {
        return Err(format!("no reason given:\n{}", run.stderr));
    }
    Ok(())
}

fn hello(file: &str, vcpus: u32) -> Result<(), String> {
    let n = vcpus.to_string();
    let run = run_guest(file, &["--vcpus", &n])?;
    run.expect_status(0)?;
    for i in 0..vcpus {
        let line = format!("hello from cpu {i} of {vcpus}");
        let count = run.stdout.lines().filter(|l| l.trim_end() == line).count();
        if count != 1 {
            return Err(format!("`{line}` printed {count} times:\n{}", run.stdout));
        }
    }
    let greetings = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("hello from cpu"))
        .count();
    if greetings != vcpus as usize {
        return Err(format!(
            "{greetings} greetings for {vcpus} vCPUs:\n{}",
            run.stdout
        ));
    }
    Ok(())
}

fn exit_code(file: &str) -> Result<(), String> {
    run_guest(file, &["--cmdline", "code=3"])?.expect_status(3)?;
    run_guest(file, &["--cmdline", "code=0"])?.expect_status(0)?;
    Ok(())
}

fn triple_fault() -> Result<(), String> {
    let run = run_guest("triple-fault.elf", &[])?;
    run.expect_status(i32::from(vmm::exit_status::GUEST_CRASH))?;
    if !(run.stderr.contains("triple fault") && run.stderr.contains("rip=")) {
        return Err(format!(
            "crash not described with registers:\n{}",
            run.stderr
        ));
    }
    Ok(())
}

fn guest_exception() -> Result<(), String> {
    // The guest's own #GP handler reports the fault and exits 0x70.
    let run = run_guest("bad-cr4.elf", &[])?;
    run.expect_status(0x70)?;
    if !run.stdout.contains("exception 13") {
        return Err(format!("no exception line:\n{}", run.stdout));
    }
    Ok(())
}

fn timeout() -> Result<(), String> {
    let run = run_guest("spin.elf", &["--vcpus", "2", "--timeout", "2"])?;
    run.expect_status(i32::from(vmm::exit_status::TIMEOUT))?;
    if run.elapsed >= Duration::from_secs(5) || run.elapsed < Duration::from_secs(2) {
        return Err(format!(
            "--timeout 2 stopped the guest after {:?}",
            run.elapsed
        ));
    }
    Ok(())
}

/// Every terminating signal a user or supervisor sends stops the VM
/// cleanly: status 128 + N, one line naming it, the API socket removed.
fn sigterm() -> Result<(), String> {
    let kernel = guest("spin.elf");
    for sig in vmm::vm::STOP_SIGNALS {
        let started = std::time::Instant::now();
        let sock = std::env::temp_dir().join(format!("vmm-sig-{sig}-{}.sock", std::process::id()));
        let sock_arg = sock.to_string_lossy().into_owned();
        let child = crate::harness::spawn(&[
            "run",
            "--kernel",
            kernel.to_str().ok_or("path")?,
            "--vcpus",
            "2",
            "--api-sock",
            &sock_arg,
            "--timeout",
            "60",
        ])?;
        // The handlers are in place once the VM runs, after the socket.
        while !sock.exists() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        if unsafe { libc::kill(child.id() as i32, sig) } != 0 {
            return Err("kill failed".into());
        }
        let run = crate::harness::wait(child, started)?;
        run.expect_status(128 + sig)?;
        if !run.stderr.contains(&format!("stopped by signal {sig}")) {
            return Err(format!("signal {sig}: no stop line:\n{}", run.stderr));
        }
        if sock.exists() {
            return Err(format!("signal {sig} left the socket {sock_arg} behind"));
        }
    }
    Ok(())
}

fn default_guest() -> Result<(), String> {
    let run = vmm(&["run"])?;
    run.expect_status(0)?;
    // The guest perf demo on 2 vCPUs: perf stat tables and a perf report on
    // stdout (the guest's serial), the host-side summary on stderr (as perf
    // stat's), so the two never interleave.
    for want in [
        "Performance counter stats for 'int-loop' on cpu 0:",
        "Performance counter stats for 'branchy' on cpu 1:",
        "# Overhead  Samples  Symbol",
        "perf-demo: PASS",
    ] {
        if !run.stdout.contains(want) {
            return Err(format!("default run lacks `{want}`:\n{}", run.stdout));
        }
    }
    for want in ["Performance counter stats for VM (2 vCPUs", "Host PMUs:"] {
        if !run.stderr.contains(want) {
            return Err(format!("summary lacks `{want}`:\n{}", run.stderr));
        }
        if run.stdout.contains(want) {
            return Err(format!("`{want}` on stdout, among the guest's output"));
        }
    }
    Ok(())
}

/// An ELF64 whose one segment ends past 16 MiB of RAM.
fn oversized_elf() -> Vec<u8> {
    let mut img = vec![0u8; 64 + 56 + 16];
    img[..4].copy_from_slice(b"\x7fELF");
    img[4] = 2; // ELFCLASS64
    img[5] = 1; // little endian
    img[6] = 1;
    img[16] = 2; // ET_EXEC
    img[18] = 62; // EM_X86_64
    img[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes()); // e_entry
    img[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    img[54] = 56; // e_phentsize
    img[56] = 1; // e_phnum
    img[64] = 1; // PT_LOAD
    img[64 + 8..64 + 16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
    img[64 + 24..64 + 32].copy_from_slice(&0x10_0000u64.to_le_bytes()); // p_paddr
    img[64 + 32..64 + 40].copy_from_slice(&16u64.to_le_bytes()); // p_filesz
    img[64 + 40..64 + 48].copy_from_slice(&(64u64 << 20).to_le_bytes()); // p_memsz
    img
}

fn bad_inputs() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("vmm-bad-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let hello = std::fs::read(guest("hello.elf")).map_err(|e| e.to_string())?;
    let mut random = vec![0u8; 64 * 1024];
    let mut x: u32 = 0x1234_5678;
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let files: [(&str, &[u8]); 4] = [
        ("empty", &[]),
        ("random", &random),
        ("truncated.elf", &hello[..hello.len().min(200)]),
        ("oversized.elf", &oversized_elf()),
    ];
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    for (name, bytes) in files {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| e.to_string())?;
        let p = p.to_string_lossy().into_owned();
        cases.push((
            name.into(),
            vec![
                "run".into(),
                "--kernel".into(),
                p,
                "--memory".into(),
                "16".into(),
            ],
        ));
    }
    let hello_path = guest("hello.elf").to_string_lossy().into_owned();
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    cases.push((
        "nonexistent".into(),
        argv(&["run", "--kernel", "/nonexistent/kernel.elf"]),
    ));
    cases.push((
        "vcpus 0".into(),
        argv(&["run", "--kernel", &hello_path, "--vcpus", "0"]),
    ));
    cases.push((
        "memory absurd".into(),
        argv(&["run", "--kernel", &hello_path, "--memory", "99999999"]),
    ));
    cases.push((
        "memory 0".into(),
        argv(&["run", "--kernel", &hello_path, "--memory", "0"]),
    ));
    cases.push(("unknown flag".into(), argv(&["run", "--frobnicate"])));
    // Endless, huge or blocking inputs: refused at once, never read whole.
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: mkfifo on a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err("mkfifo failed".into());
    }
    let fifo = fifo.to_string_lossy().into_owned();
    let big = dir.join("big.elf");
    let f = std::fs::File::create(&big).map_err(|e| e.to_string())?;
    f.set_len(17 << 20).map_err(|e| e.to_string())?;
    let big = big.to_string_lossy().into_owned();
    let sim_fifo = format!("sim:{fifo}");
    for (name, args) in [
        ("kernel /dev/zero", vec!["run", "--kernel", "/dev/zero"]),
        (
            "kernel FIFO without a writer",
            vec!["run", "--kernel", &fifo],
        ),
        (
            "kernel larger than RAM",
            vec!["run", "--kernel", &big, "--memory", "16"],
        ),
        (
            "profile /dev/zero",
            vec![
                "run",
                "--kernel",
                &hello_path,
                "--host-pmu",
                "sim:/dev/zero",
            ],
        ),
        (
            "profile FIFO",
            vec!["run", "--kernel", &hello_path, "--host-pmu", &sim_fifo],
        ),
    ] {
        cases.push((name.into(), argv(&args)));
    }
    cases.push((
        "negative timeout".into(),
        argv(&["run", "--kernel", &hello_path, "--timeout", "-1"]),
    ));
    for (name, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = vmm(&args)?;
        run.expect_status(2).map_err(|e| format!("{name}: {e}"))?;
        if ["vcpus 0", "unknown flag", "negative timeout"].contains(&name.as_str()) {
            // clap's own message, whole: the problem on the first line,
            // then the usage.
            let first = run.stderr.lines().next().unwrap_or_default();
            let whole = if name == "vcpus 0" {
                first.contains("0 is not in 1..=16")
            } else {
                run.stderr.contains("Usage: vmm run")
            };
            if !first.starts_with("error: ")
                || !whole
                || !run.stderr.contains("--help")
                || run.stderr.contains("panicked")
            {
                return Err(format!("{name}: not clap's whole message:\n{}", run.stderr));
            }
            continue;
        }
        one_line_error(&run).map_err(|e| format!("{name}: {e}"))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
