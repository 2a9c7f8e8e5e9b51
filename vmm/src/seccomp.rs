//! Seccomp filters, one per kind of thread (rust-vmm `seccompiler`).
//!
//! Each thread installs its own filter when it starts its work
//! ([`enter`]); the filter then holds for the thread's life, and threads it
//! starts inherit it (seccomp filters stack: a syscall must pass every
//! filter of the thread). Installing a filter sets `no_new_privs` first.
//! A syscall outside the thread's list kills the whole process with
//! `SIGSYS` (`SECCOMP_RET_KILL_PROCESS`): a VMM thread doing something it
//! never does is a compromised or broken VMM, and stopping everything is
//! the only safe answer. `vmm run --seccomp off` installs nothing (for
//! debugging with tools that need more, e.g. a profiler).
//!
//! The lists below are data: what each kind of thread calls, found with
//! `strace -f` over the KVM test suite on every host backend (`perf`,
//! `sim:PROFILE`, `thread-clock`), with the statistics API in use. `ioctl`
//! is allowed only with the request numbers the thread issues.
//!
//! | kind | what it does |
//! | --- | --- |
//! | [`ThreadKind::Vcpu`] | `KVM_RUN`, exits, PMU host counters (perf events or POSIX timers), PMIs |
//! | [`ThreadKind::EventLoop`] | the main thread once the vCPUs run: stop sources, publication ticks, kicks, joining and teardown |
//! | [`ThreadKind::ApiAccept`] | accepts API connections and starts connection threads |
//! | [`ThreadKind::ApiConnection`] | reads requests and writes responses on one connection |
//!
//! Test aid: the environment variable [`VIOLATE_ENV`] set to a kind's name
//! makes threads of that kind, right after installing their filter, make a
//! syscall outside their list (`socket(AF_INET, ...)`). A guest cannot set
//! the VMM's environment; the KVM tests use it to show that the filter of
//! every kind is in force.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Test aid: names a thread kind that makes a forbidden syscall (see the
/// module documentation).
pub const VIOLATE_ENV: &str = "VMM_TEST_SECCOMP_VIOLATE";

/// The kinds of thread that run under a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    Vcpu,
    EventLoop,
    ApiAccept,
    ApiConnection,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 4] = [
        ThreadKind::Vcpu,
        ThreadKind::EventLoop,
        ThreadKind::ApiAccept,
        ThreadKind::ApiConnection,
    ];

    /// The name [`VIOLATE_ENV`] takes.
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::EventLoop => "event-loop",
            ThreadKind::ApiAccept => "api-accept",
            ThreadKind::ApiConnection => "api-connection",
        }
    }

    /// The syscalls allowed without conditions.
    pub fn syscalls(self) -> &'static [libc::c_long] {
        match self {
            ThreadKind::Vcpu => VCPU,
            ThreadKind::EventLoop => EVENT_LOOP,
            ThreadKind::ApiAccept => API_ACCEPT,
            ThreadKind::ApiConnection => API_CONNECTION,
        }
    }

    /// The `ioctl` requests allowed.
    pub fn ioctls(self) -> Vec<u64> {
        match self {
            ThreadKind::Vcpu => vec![
                ioctls::KVM_RUN(),
                ioctls::KVM_GET_REGS(),
                ioctls::KVM_GET_SREGS(),
                ioctls::KVM_GET_LAPIC(),
                ioctls::KVM_SET_LAPIC(),
                ioctls::KVM_NMI(),
                ioctls::KVM_SIGNAL_MSI(),
                ioctls::PERF_EVENT_IOC_ENABLE(),
                ioctls::PERF_EVENT_IOC_DISABLE(),
                ioctls::PERF_EVENT_IOC_RESET(),
                ioctls::PERF_EVENT_IOC_PERIOD(),
            ],
            // Writing to a terminal (the serial console, logs) may ask
            // whether it is one.
            ThreadKind::EventLoop => vec![libc::TCGETS],
            // A refused connection is made non-blocking (FIONBIO).
            ThreadKind::ApiAccept => vec![libc::FIONBIO],
            ThreadKind::ApiConnection => vec![],
        }
    }
}

/// Memory, thread exit, locks, signals, time: what any Rust thread may do.
macro_rules! common {
    () => {
        [
            libc::SYS_brk,
            libc::SYS_mmap,
            libc::SYS_munmap,
            libc::SYS_mremap,
            libc::SYS_mprotect,
            libc::SYS_madvise,
            libc::SYS_futex,
            libc::SYS_sched_yield,
            libc::SYS_sched_getaffinity,
            libc::SYS_gettid,
            libc::SYS_getpid,
            libc::SYS_getrandom,
            libc::SYS_clock_gettime,
            libc::SYS_clock_nanosleep,
            libc::SYS_nanosleep,
            libc::SYS_rt_sigprocmask,
            libc::SYS_rt_sigreturn,
            libc::SYS_sigaltstack,
            libc::SYS_write,
            libc::SYS_close,
            libc::SYS_exit,
            libc::SYS_exit_group,
        ]
    };
}

const fn concat<const A: usize, const B: usize, const N: usize>(
    a: [libc::c_long; A],
    b: [libc::c_long; B],
) -> [libc::c_long; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// vCPU threads: `KVM_RUN` and exit handling (ioctl, below), host counters
/// as perf events (`perf_event_open`, `read`, `fcntl` on their fds) or as
/// POSIX CPU-time timers (`timer_*`), the kick signal (`tgkill` is not
/// needed: a vCPU never kicks), serial output (`write`).
const VCPU: &[libc::c_long] = &concat::<22, 7, 29>(
    common!(),
    [
        libc::SYS_ioctl,
        libc::SYS_read,
        libc::SYS_fcntl,
        libc::SYS_perf_event_open,
        libc::SYS_timer_create,
        libc::SYS_timer_settime,
        libc::SYS_timer_delete,
    ],
);

/// The main thread from the event loop on: epoll over eventfds and
/// timerfds, kicking vCPUs (`tgkill`) and joining them, stopping the API
/// (`shutdown` of its connections, `statx`/`unlink` of its socket), the
/// stop signals' handler (`rt_sigreturn`), printing the summary.
const EVENT_LOOP: &[libc::c_long] = &concat::<22, 16, 38>(
    common!(),
    [
        libc::SYS_rt_sigaction,
        libc::SYS_ioctl,
        libc::SYS_read,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_timerfd_create,
        libc::SYS_timerfd_settime,
        libc::SYS_eventfd2,
        libc::SYS_fcntl,
        libc::SYS_tgkill,
        libc::SYS_shutdown,
        libc::SYS_statx,
        libc::SYS_newfstatat,
        libc::SYS_unlink,
    ],
);

/// The API's accept thread: `poll` on the socket and the stop eventfd,
/// `accept4`, everything its connection threads do (they inherit this
/// filter), a 503 (`write`, `setsockopt` for its timeout), keeping a
/// clone of each connection (`fcntl` F_DUPFD_CLOEXEC) and starting
/// connection threads (`clone3`/`clone`, `set_robust_list`, `rseq`, and
/// `prctl`/`seccomp` for the new thread's name and filter).
const API_ACCEPT: &[libc::c_long] = &concat::<22, 15, 37>(
    common!(),
    [
        // What its connection threads do: they inherit this filter.
        libc::SYS_read,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_writev,
        libc::SYS_poll,
        libc::SYS_accept4,
        libc::SYS_setsockopt,
        libc::SYS_fcntl,
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_prctl,
        libc::SYS_seccomp,
        libc::SYS_shutdown,
    ],
);

/// An API connection thread: read a request, write the response, with
/// timeouts (`setsockopt`, `poll`).
const API_CONNECTION: &[libc::c_long] = &concat::<22, 8, 30>(
    common!(),
    [
        libc::SYS_fcntl,
        libc::SYS_read,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_writev,
        libc::SYS_setsockopt,
        libc::SYS_poll,
        libc::SYS_shutdown,
    ],
);

/// `ioctl` request numbers (the `_IO*` encodings of the kernel headers).
mod ioctls {
    use kvm_bindings::{kvm_lapic_state, kvm_msi, kvm_regs, kvm_sregs, KVMIO};
    use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr};

    // The macros define `pub fn NAME() -> c_ulong`.

    const PERF: u32 = b'$' as u32;
    ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
    ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
    ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
    ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_lapic_state);
    ioctl_iow_nr!(KVM_SET_LAPIC, KVMIO, 0x8f, kvm_lapic_state);
    ioctl_io_nr!(KVM_NMI, KVMIO, 0x9a);
    ioctl_iow_nr!(KVM_SIGNAL_MSI, KVMIO, 0xa5, kvm_msi);
    ioctl_io_nr!(PERF_EVENT_IOC_ENABLE, PERF, 0);
    ioctl_io_nr!(PERF_EVENT_IOC_DISABLE, PERF, 1);
    ioctl_io_nr!(PERF_EVENT_IOC_RESET, PERF, 3);
    ioctl_iow_nr!(PERF_EVENT_IOC_PERIOD, PERF, 4, u64);
}

/// Why a filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the {0} seccomp filter: {1}")]
    Build(&'static str, seccompiler::BackendError),
    #[error("installing the {0} seccomp filter: {1}")]
    Install(&'static str, seccompiler::Error),
}

/// The compiled filters of every kind.
pub struct Filters {
    programs: Vec<(ThreadKind, BpfProgram)>,
    violate: Option<String>,
}

fn arch() -> TargetArch {
    TargetArch::x86_64
}

/// Builds the BPF program of one kind.
pub fn program(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let err = |e| SeccompError::Build(kind.name(), e);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = kind
        .syscalls()
        .iter()
        .filter(|&&s| s != libc::SYS_ioctl)
        .map(|&s| (s, vec![]))
        .collect();
    let ioctls = kind
        .ioctls()
        .into_iter()
        .map(|req| {
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req)
                .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    if !ioctls.is_empty() {
        rules.insert(libc::SYS_ioctl, ioctls);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch(),
    )
    .map_err(err)?;
    filter.try_into().map_err(err)
}

impl Filters {
    /// Compiles every kind's filter (before any thread needs one).
    ///
    /// Also keeps glibc's malloc in its main arena (`M_ARENA_MAX` 1): the
    /// first thread to need a new arena opens `/sys/devices/system/cpu/online`
    /// to count CPUs (seen with 64 API connection threads), and the first
    /// shrink of a thread arena's heap opens `/proc/sys/vm/overcommit_memory`
    /// (seen on an API connection thread), which no filter allows. The vCPU
    /// threads do not allocate on the exit path, so one arena costs them
    /// nothing.
    pub fn build() -> Result<Filters, SeccompError> {
        // SAFETY: mallopt only sets an allocator parameter.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) } != 1 {
            log::warn!("mallopt(M_ARENA_MAX) failed; new threads may count CPUs");
        }
        let programs = ThreadKind::ALL
            .iter()
            .map(|&k| program(k).map(|p| (k, p)))
            .collect::<Result<_, _>>()?;
        Ok(Filters {
            programs,
            violate: std::env::var(VIOLATE_ENV).ok(),
        })
    }
}

/// glibc malloc arenas: the main one only (see [`Filters::build`]).
const MALLOC_ARENAS: libc::c_int = 1;

static FILTERS: OnceLock<Filters> = OnceLock::new();

/// Makes `filters` the ones [`enter`] installs (once per process; `vmm run`
/// without `--seccomp off`). Without it, [`enter`] installs nothing.
pub fn activate(filters: Filters) {
    if FILTERS.set(filters).is_err() {
        log::warn!("seccomp filters were already active");
    }
}

/// Puts the calling thread under the filter of `kind`, if filters are
/// active. Sets `no_new_privs` first.
pub fn enter(kind: ThreadKind) -> Result<(), SeccompError> {
    let Some(filters) = FILTERS.get() else {
        return Ok(());
    };
    let Some((_, program)) = filters.programs.iter().find(|(k, _)| *k == kind) else {
        return Ok(());
    };
    seccompiler::apply_filter(program).map_err(|e| SeccompError::Install(kind.name(), e))?;
    if filters.violate.as_deref() == Some(kind.name()) {
        violate(kind);
    }
    Ok(())
}

/// The test aid: a syscall no thread kind allows.
fn violate(kind: ThreadKind) {
    log::warn!(
        "{VIOLATE_ENV}: {} thread calling socket(AF_INET), which its filter forbids",
        kind.name()
    );
    // SAFETY: socket() takes no pointers; the fd, if any, is closed.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by socket() and is owned here.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles() {
        for kind in ThreadKind::ALL {
            let p = program(kind).unwrap();
            assert!(!p.is_empty(), "{}", kind.name());
        }
    }

    #[test]
    fn ioctl_numbers_are_the_kernel_headers() {
        assert_eq!(ioctls::KVM_RUN(), 0xae80);
        assert_eq!(ioctls::KVM_NMI(), 0xae9a);
        assert_eq!(ioctls::KVM_GET_LAPIC(), 0x8400_ae8e);
        assert_eq!(ioctls::KVM_SIGNAL_MSI(), 0x4020_aea5);
        assert_eq!(ioctls::PERF_EVENT_IOC_ENABLE(), 0x2400);
        assert_eq!(ioctls::PERF_EVENT_IOC_PERIOD(), 0x4008_2404);
    }

    #[test]
    fn no_kind_allows_new_sockets_or_exec() {
        for kind in ThreadKind::ALL {
            for forbidden in [
                libc::SYS_socket,
                libc::SYS_execve,
                libc::SYS_openat,
                libc::SYS_ptrace,
            ] {
                assert!(
                    !kind.syscalls().contains(&forbidden),
                    "{} allows {forbidden}",
                    kind.name()
                );
            }
        }
    }

    #[test]
    fn connection_threads_need_nothing_accept_forbids() {
        // Connection threads inherit the accept thread's filter.
        for s in API_CONNECTION {
            assert!(API_ACCEPT.contains(s), "{s}");
        }
    }
}
