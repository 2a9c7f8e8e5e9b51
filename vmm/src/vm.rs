//! A KVM virtual machine: guest memory, in-kernel irqchip and PIT, vCPU
//! threads, and the main thread that waits for the VM to stop.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::cpuid::CpuVendor;
use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::api::{self, model, StatsSource};
use crate::boot::{self, layout, BootEntry};
use crate::devices::{fw_cfg::FwCfg, serial, PioBus};
use crate::shared::VmShared;
use crate::stats_source::VmSource;
// `cli` names the stop reason through the VM it ran.
pub use crate::shared::StopReason;
use crate::vcpu::Vcpu;
use crate::{event_loop, kick, pmu, report, VmError};
use vpmu::config::PmuConfig;

use crate::pmu::host::{HostPmuChoice, HostSide};
use vpmu::core::policy::MuxPolicy;

/// Identity-map and TSS pages VMX needs for real-mode emulation, placed
/// just below the 4 GiB boundary, away from RAM and the LAPIC.
const IDENTITY_MAP_ADDR: u64 = 0xFFFB_C000;
const TSS_ADDR: usize = 0xFFFB_D000;

/// The most vCPUs a VM may have (the guest runtime's stacks are sized for it).
pub const MAX_VCPUS: u8 = 16;

/// What to boot.
#[derive(Clone, Debug)]
pub enum Kernel {
    /// An image file given by the user.
    Path(PathBuf),
    /// The image compiled into the binary.
    Builtin(&'static [u8]),
}

/// Everything `vmm run` configures.
#[derive(Clone, Debug)]
pub struct VmConfig {
    pub kernel: Kernel,
    /// The CPU vendor guests see (`--cpu-vendor`, resolved).
    pub vendor: CpuVendor,
    pub vcpus: u8,
    pub mem_mib: u64,
    pub cmdline: String,
    pub timeout: Option<Duration>,
    pub pmu: PmuConfig,
    /// `--host-pmu`.
    pub host: HostPmuChoice,
    /// `--scaling`, `--grouping`.
    pub policy: MuxPolicy,
    /// `--mux-interval-ms`: (host PMU, interval).
    pub mux_intervals: Vec<(String, u64)>,
    /// `--inject-host-fault`: every host perf_event_open fails with it.
    pub host_fault: Option<i32>,
    /// `--sim-phases`: the simulated workload's phases.
    pub sim_phases: Vec<(u64, f64)>,
    /// Write the final statistics as JSON here.
    pub stats_json: Option<PathBuf>,
    /// The guest's serial output goes here instead of stdout.
    pub serial: Option<PathBuf>,
    /// Serve the statistics API on this Unix socket.
    pub api_sock: Option<PathBuf>,
    /// `--seccomp`: put every thread under its seccomp filter.
    pub seccomp: bool,
    /// Print the statistics summary when the VM stops.
    pub stats: bool,
    /// `--host-pmu` as given, for the API.
    pub host_arg: String,
}

/// How often vCPUs publish their state while the statistics API runs.
const API_PUBLISH_INTERVAL: Duration = Duration::from_millis(200);

/// Signals that stop the VM like `--timeout` does (clean shutdown, statistics
/// written, socket removed, status 128 + N): every signal whose default
/// action terminates the process and that a user or a supervisor sends.
pub const STOP_SIGNALS: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
];

/// The eventfd the stop signals write to; -1 when no VM runs.
static SIGNAL_EVT_FD: AtomicI32 = AtomicI32::new(-1);
/// The signal that asked the VM to stop.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn handle_stop_signal(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
    let fd = SIGNAL_EVT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: `write` is async-signal-safe; the buffer is a live local of
        // the right size, and a stale fd at worst makes the write fail.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

fn open_kvm() -> Result<Kvm, VmError> {
    Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENXIO | libc::ENODEV => {
            VmError::KvmUnavailable("/dev/kvm does not exist".into())
        }
        libc::EACCES | libc::EPERM => {
            VmError::KvmUnavailable("permission denied opening /dev/kvm".into())
        }
        _ => VmError::Kvm("open /dev/kvm", e),
    })
}

fn read_kernel(
    kernel: &Kernel,
    max_bytes: u64,
) -> Result<std::borrow::Cow<'static, [u8]>, VmError> {
    match kernel {
        Kernel::Builtin(b) => Ok(std::borrow::Cow::Borrowed(b)),
        // An image larger than guest RAM cannot be loaded anyway.
        Kernel::Path(p) => vpmu::util::file::read_regular(p, max_bytes)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| VmError::KernelFile(p.display().to_string(), e)),
    }
}

/// Validates the configuration that does not need KVM.
pub fn validate(cfg: &VmConfig) -> Result<(), VmError> {
    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
        return Err(VmError::Config(format!(
            "--vcpus must be 1..={MAX_VCPUS}, got {}",
            cfg.vcpus
        )));
    }
    if cfg.mem_mib < layout::MIN_MEM_MIB || cfg.mem_mib > layout::MAX_MEM_MIB {
        return Err(VmError::Config(format!(
            "--memory must be {}..={} MiB, got {}",
            layout::MIN_MEM_MIB,
            layout::MAX_MEM_MIB,
            cfg.mem_mib
        )));
    }
    cfg.pmu
        .validate()
        .map_err(|e| VmError::Config(e.to_string()))?;
    Ok(())
}

/// Builds the VM, runs it until it stops, and returns why it stopped.
pub fn run(cfg: &VmConfig) -> Result<StopReason, VmError> {
    validate(cfg)?;
    // Checked and opened now (the event loop's seccomp filter opens no
    // files), written when the VM stops.
    let stats_file = cfg.stats_json.as_deref().map(open_stats_file).transpose()?;
    let serial_out: Box<dyn Write + Send> = match &cfg.serial {
        None => Box::new(std::io::stdout()),
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| VmError::Config(format!("--serial {}: {e}", p.display())))?,
        ),
    };
    let image = read_kernel(&cfg.kernel, cfg.mem_mib << 20)?;
    if cfg.seccomp {
        // Compiled now; each thread installs its own when it starts.
        crate::seccomp::activate(crate::seccomp::Filters::build()?);
    }
    let kvm = open_kvm()?;
    let vm = kvm
        .create_vm()
        .map_err(|e| VmError::Kvm("KVM_CREATE_VM", e))?;

    let mem_size = cfg.mem_mib << 20;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), mem_size as usize)])
        .map_err(|e| VmError::Memory(e.to_string()))?;
    let entry = boot::load(&mem, &image, &cfg.cmdline)?;
    drop(image);
    register_memory(&vm, &mem)?;

    vm.set_identity_map_address(IDENTITY_MAP_ADDR)
        .map_err(|e| VmError::Kvm("KVM_SET_IDENTITY_MAP_ADDR", e))?;
    vm.set_tss_address(TSS_ADDR)
        .map_err(|e| VmError::Kvm("KVM_SET_TSS_ADDR", e))?;
    vm.create_irq_chip()
        .map_err(|e| VmError::Kvm("KVM_CREATE_IRQCHIP", e))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit)
        .map_err(|e| VmError::Kvm("KVM_CREATE_PIT2", e))?;
    pmu::filter::install(&vm)?;

    let uart_evt = EventFd::new(EFD_NONBLOCK).map_err(VmError::Host)?;
    vm.register_irqfd(&uart_evt, serial::IRQ)
        .map_err(|e| VmError::Kvm("KVM_IRQFD", e))?;
    // Every vCPU exists before any is configured: host PMU discovery needs
    // the guest TSC frequency, and CPUID leaf 0xA needs the host side.
    let fds = (0..cfg.vcpus)
        .map(|id| {
            vm.create_vcpu(u64::from(id))
                .map_err(|e| VmError::Kvm("KVM_CREATE_VCPU", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tsc_khz = fds
        .first()
        .ok_or_else(|| VmError::Config("no vCPU".into()))?
        .get_tsc_khz()
        .map_err(|e| VmError::Kvm("KVM_GET_TSC_KHZ", e))?;
    let host = HostSide::new(
        &cfg.host,
        cfg.policy,
        tsc_khz,
        &cfg.mux_intervals,
        cfg.host_fault,
        cfg.sim_phases.clone(),
    )
    .map_err(|e| VmError::Config(e.to_string()))?;

    let pio = PioBus::new(
        serial::new(uart_evt, serial_out),
        FwCfg::new(mem_size, u16::from(cfg.vcpus)),
    );
    let shared = Arc::new(
        VmShared::new(vm, cfg.vendor, cfg.pmu, host, cfg.vcpus, pio).map_err(VmError::Host)?,
    );

    let base_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| VmError::Kvm("KVM_GET_SUPPORTED_CPUID", e))?;
    kick::install_handler().map_err(|e| VmError::Host(e.into()))?;

    let vcpus = fds
        .into_iter()
        .zip(0..cfg.vcpus)
        .map(|(fd, id)| {
            let boot: Option<BootEntry> = (id == 0).then_some(entry);
            Vcpu::new(fd, id, cfg.vcpus, &base_cpuid, boot, Arc::clone(&shared))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let source = Arc::new(VmSource::new(Arc::clone(&shared), config_info(cfg)));
    let api = cfg
        .api_sock
        .as_deref()
        .map(|path| api::spawn(path, Arc::clone(&source) as Arc<dyn StatsSource>))
        .transpose()
        .map_err(|e| VmError::Api(e.to_string()))?;
    let publish = api.as_ref().map(|_| API_PUBLISH_INTERVAL);
    let reason = run_until_stopped(vcpus, &shared, cfg.timeout, publish)?;
    // The socket goes away with the VM.
    drop(api);
    if let (Some(path), Some(file)) = (&cfg.stats_json, stats_file) {
        write_stats(source.as_ref(), &reason, file)
            .map_err(|e| VmError::StatsFile(path.display().to_string(), e))?;
    }
    if cfg.stats {
        print_summary(source.as_ref());
    }
    Ok(reason)
}

/// The configuration the API reports.
fn config_info(cfg: &VmConfig) -> model::VmConfigInfo {
    model::VmConfigInfo {
        vcpus: u32::from(cfg.vcpus),
        memory_mib: cfg.mem_mib,
        vpmu: model::VpmuConfigInfo::of(&cfg.pmu, cfg.vendor),
        host_pmu: cfg.host_arg.clone(),
        scaling: cfg.policy.scaling.to_string(),
        grouping: cfg.policy.grouping.to_string(),
    }
}

/// `--stats`: the `vmm stats` table, from the vCPUs' final publications,
/// on stderr as `perf stat`'s (stdout carries the guest's serial output).
fn print_summary(source: &VmSource) {
    let table = report::of_source(source);
    let mut out = std::io::stderr().lock();
    if let Err(e) = out.write_all(table.as_bytes()).and_then(|()| out.flush()) {
        log::warn!("printing the statistics summary: {e}");
    }
}

/// Opens `--stats-json PATH` for writing (created or truncated now: the
/// event loop's seccomp filter allows neither open nor ftruncate), so a path
/// that cannot be written is refused before the guest runs.
fn open_stats_file(path: &std::path::Path) -> Result<std::fs::File, VmError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| VmError::Config(format!("--stats-json {}: {e}", path.display())))
}

/// Writes the `vmm stats --json` snapshot of the stopped VM plus why it
/// stopped and the exit status (`StatsFile` in the OpenAPI file).
fn write_stats(
    source: &VmSource,
    reason: &StopReason,
    mut file: std::fs::File,
) -> Result<(), std::io::Error> {
    let body = crate::stats_cmd::StatsFile::of(source, reason);
    let json = serde_json::to_vec_pretty(&body).map_err(std::io::Error::from)?;
    file.write_all(&json)?;
    file.write_all(b"\n")
}

fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    for (slot, region) in mem.iter().enumerate() {
        let host_addr = mem
            .get_host_address(region.start_addr())
            .map_err(|e| VmError::Memory(e.to_string()))?;
        let region_desc = kvm_bindings::kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host_addr as u64,
        };
        // SAFETY: the region is a live mmap owned by `mem`, which outlives
        // the VM: `run` keeps `mem` alive until every vCPU thread is joined.
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(|e| VmError::Kvm("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    Ok(())
}

/// Starts one thread per vCPU and waits until the guest exits, crashes, the
/// timeout passes or a signal arrives; then kicks and joins every vCPU.
fn run_until_stopped(
    vcpus: Vec<Vcpu>,
    shared: &Arc<VmShared>,
    timeout: Option<Duration>,
    publish_every: Option<Duration>,
) -> Result<StopReason, VmError> {
    let signal_evt = EventFd::new(EFD_NONBLOCK).map_err(VmError::Host)?;
    SIGNAL_EVT_FD.store(signal_evt.as_raw_fd(), Ordering::SeqCst);
    for sig in STOP_SIGNALS {
        vmm_sys_util::signal::register_signal_handler(sig, handle_stop_signal)
            .map_err(|e| VmError::Host(e.into()))?;
    }

    let mut threads = Vec::with_capacity(vcpus.len());
    for v in vcpus {
        let id = v.id();
        let t = thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || v.run())
            .map_err(VmError::Host)?;
        threads.push(t);
    }

    use std::os::unix::thread::JoinHandleExt;
    // From here on the main thread only runs the event loop and tears down.
    if let Err(e) = crate::seccomp::enter(crate::seccomp::ThreadKind::EventLoop) {
        log::error!("{e}");
        shared.request_stop(StopReason::VmmError(e.to_string()));
    }
    // Readers of published state get it at most `publish_every` old: ask
    // every vCPU to publish and kick it (a vCPU may never exit on its own).
    let publish = || {
        for (view, t) in shared.vcpus.iter().zip(&threads) {
            view.request_publish();
            kick::kick(t.as_pthread_t());
        }
    };
    let tick: Box<dyn FnMut() + '_> = Box::new(publish);
    let reason = event_loop::wait_for_stop(
        shared,
        &signal_evt,
        || STOP_SIGNAL.swap(0, Ordering::SeqCst),
        timeout,
        publish_every.map(|p| (p, tick)),
    );
    shared.request_stop(reason);
    SIGNAL_EVT_FD.store(-1, Ordering::SeqCst);

    // Kick until every thread has left KVM_RUN: a kick that lands before a
    // thread installed its handler target is retried.
    while threads.iter().any(|t| !t.is_finished()) {
        for t in threads.iter().filter(|t| !t.is_finished()) {
            kick::kick(t.as_pthread_t());
        }
        thread::sleep(Duration::from_millis(1));
    }
    for t in threads {
        if t.join().is_err() {
            log::error!("a vCPU thread panicked");
        }
    }
    Ok(shared
        .take_reason()
        .unwrap_or(StopReason::VmmError("stopped without a reason".into())))
}
