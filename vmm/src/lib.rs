//! A small KVM VMM whose guests get a virtual Intel architectural PMU.
//!
//! - [`cli`]: `vmm run`, argument parsing and exit statuses.
//! - [`vm`]: the VM (memory, irqchip, PIT), vCPU threads and stopping.
//! - [`shared`]: what the main thread and vCPU threads share, and why
//!   the VM stopped.
//! - [`event_loop`]: the main thread's event loop (event-manager).
//! - [`vcpu`]: the vCPU thread and `KVM_RUN` loop; [`vcpu::dispatch`]
//!   handles one exit.
//! - [`exits`]: per-vCPU PMU exit counts and handling times.
//! - [`runtime`]: the runtime directory of per-VM API sockets.
//! - [`report`]: the final statistics table (`vmm run --stats`,
//!   `vmm stats`).
//! - [`stats_source`]: the statistics API's view of a running VM.
//! - [`stats_cmd`]: `vmm stats`, the API's command-line client.
//! - [`api`]: the statistics API (HTTP over a Unix socket).
//! - [`view`]: what vCPU threads publish for other threads to read.
//! - [`seccomp`]: the seccomp filter of each kind of thread.
//! - [`kick`]: getting a vCPU out of `KVM_RUN` (signal + `immediate_exit`).
//! - [`boot`]: ELF64 and Multiboot v1 loaders and boot structures.
//! - [`devices`]: UART, debug-exit port, fw_cfg.
//! - [`cpuid`]: the CPUID table each vCPU sees.
//! - [`pmu`]: the vCPU side of the virtual PMU: MSR filter, count source,
//!   PMI delivery.

pub mod api;
pub mod boot;
pub mod cli;
pub mod cpuid;
pub mod devices;
pub mod event_loop;
pub mod exits;
pub mod guests;
pub mod kick;
pub mod pmu;
pub mod report;
pub mod runtime;
pub mod seccomp;
pub mod shared;
pub mod stats_cmd;
pub mod stats_source;
pub mod vcpu;
pub mod view;
pub mod vm;

/// Everything that can keep a VM from running. The CLI prints it as one line
/// and maps it to an exit status with [`VmError::exit_status`].
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    Config(String),
    #[error("cannot read kernel {0}: {1}")]
    KernelFile(String, vpmu::util::file::FileError),
    #[error("cannot boot kernel: {0}")]
    Boot(#[from] boot::BootError),
    #[error("KVM unavailable: {0}")]
    KvmUnavailable(String),
    #[error("guest memory: {0}")]
    Memory(String),
    #[error("{0} failed: {1}")]
    Kvm(&'static str, kvm_ioctls::Error),
    #[error("statistics API: {0}")]
    Api(String),
    #[error("cannot write statistics to {0}: {1}")]
    StatsFile(String, std::io::Error),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("host: {0}")]
    Host(#[from] std::io::Error),
}

/// Exit statuses of `vmm` (the README lists them).
pub mod exit_status {
    /// A host-side failure while setting up or running the VM (a KVM ioctl
    /// or a host syscall failed). Not 1, which a guest writing 1 to the
    /// debug-exit port produces; the error line on stderr tells the rest.
    pub const VMM_ERROR: u8 = 126;
    /// `vmm stats`: the API could not be reached or answered an error.
    pub const STATS_UNREACHABLE: u8 = 1;
    /// Usage or configuration error: bad arguments, unreadable or
    /// unsupported image, /dev/kvm missing or not permitted.
    pub const CONFIG: u8 = 2;
    /// `--timeout` elapsed (as coreutils `timeout`).
    pub const TIMEOUT: u8 = 124;
    /// The guest crashed: triple fault, failed VM entry, KVM internal error.
    pub const GUEST_CRASH: u8 = 125;
    /// Stopped by a signal: 128 + the signal number (130 SIGINT, 143 SIGTERM).
    pub const SIGNAL_BASE: u8 = 128;
}

impl VmError {
    /// The exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            VmError::Config(_)
            | VmError::KernelFile(..)
            | VmError::Boot(_)
            | VmError::KvmUnavailable(_)
            | VmError::Memory(_) => exit_status::CONFIG,
            VmError::Kvm(..) | VmError::Host(_) | VmError::StatsFile(..) | VmError::Seccomp(_) => {
                exit_status::VMM_ERROR
            }
            // A socket path the user gave that cannot be served on.
            VmError::Api(_) => exit_status::CONFIG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_failures_have_their_own_status() {
        let host = VmError::Host(std::io::Error::from_raw_os_error(libc::ENOMEM));
        assert_eq!(host.exit_status(), exit_status::VMM_ERROR);
        let kvm = VmError::Kvm("KVM_RUN", kvm_ioctls::Error::new(libc::EFAULT));
        assert_eq!(kvm.exit_status(), exit_status::VMM_ERROR);
        // Distinct from what a guest writing 0 or 1 produces, and from the
        // other statuses of `vmm run`.
        let run_statuses = [
            exit_status::CONFIG,
            exit_status::TIMEOUT,
            exit_status::GUEST_CRASH,
        ];
        assert!(![0, 1]
            .iter()
            .chain(&run_statuses)
            .any(|s| *s == host.exit_status()));
        assert_eq!(
            VmError::Config("x".into()).exit_status(),
            exit_status::CONFIG
        );
    }
}
