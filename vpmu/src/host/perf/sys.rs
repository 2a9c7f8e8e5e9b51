//! A small safe wrapper over `perf_event_open(2)` and its ioctls.
//!
//! [`PerfFd`] owns the event's file descriptor ([`OwnedFd`]: closed on
//! drop, never leaked). Every operation returns the kernel's `errno` as an
//! [`io::Error`]; nothing here panics on a kernel error.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libc::{c_int, pid_t};
use perf_event_open_sys as sys;
use sys::bindings::perf_event_attr;

/// `fcntl` commands and the owner type the `libc` crate lacks for x86_64
/// glibc (values from `<asm-generic/fcntl.h>`, identical on every Linux
/// architecture that uses the generic numbers, which includes x86_64).
pub const F_SETSIG: c_int = 10;
pub const F_SETOWN_EX: c_int = 15;
pub const F_GETOWN_EX: c_int = 16;
pub const F_OWNER_TID: c_int = 0;

/// `struct f_owner_ex` of `<asm-generic/fcntl.h>`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FOwnerEx {
    pub type_: c_int,
    pub pid: pid_t,
}

/// `read_format` used for every event: one value and its two times.
pub const READ_FORMAT: u64 = sys::bindings::PERF_FORMAT_TOTAL_TIME_ENABLED as u64
    | sys::bindings::PERF_FORMAT_TOTAL_TIME_RUNNING as u64;

/// What `read(2)` returns with [`READ_FORMAT`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawRead {
    pub value: u64,
    pub time_enabled: u64,
    pub time_running: u64,
}

/// The calling thread's id.
pub fn gettid() -> pid_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Why a read produced no value.
#[derive(Debug)]
pub enum ReadError {
    /// `read(2)` returned 0 bytes: a pinned event that could not be
    /// scheduled is in error state (perf_event_open(2), "pinned").
    ErrorState,
    Io(io::Error),
}

/// An open perf event.
#[derive(Debug)]
pub struct PerfFd {
    fd: OwnedFd,
}

fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl PerfFd {
    /// `perf_event_open(attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)`.
    pub fn open(attr: &perf_event_attr, pid: pid_t, cpu: c_int) -> io::Result<PerfFd> {
        let mut attr = *attr;
        attr.size = std::mem::size_of::<perf_event_attr>() as u32;
        // SAFETY: `attr` is a valid, initialised perf_event_attr whose
        // `size` field is its own size; the kernel only reads it (and may
        // write `size` back on E2BIG, which is in bounds). The returned fd,
        // if non-negative, is a new descriptor that nothing else owns.
        let fd = unsafe {
            sys::perf_event_open(
                &mut attr,
                pid,
                cpu,
                -1,
                sys::bindings::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
            )
        };
        let fd = check(fd)?;
        Ok(PerfFd {
            // SAFETY: `fd` was just returned by the kernel and is owned by
            // no one else; OwnedFd closes it exactly once.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `PERF_EVENT_IOC_ENABLE`.
    pub fn enable(&self) -> io::Result<()> {
        // SAFETY: ioctl on an fd we own; the argument is a plain integer.
        check(unsafe { sys::ioctls::ENABLE(self.raw(), 0) }).map(drop)
    }

    /// `PERF_EVENT_IOC_DISABLE`.
    pub fn disable(&self) -> io::Result<()> {
        // SAFETY: as for `enable`.
        check(unsafe { sys::ioctls::DISABLE(self.raw(), 0) }).map(drop)
    }

    /// `PERF_EVENT_IOC_RESET`: the count goes to zero (times do not).
    pub fn reset(&self) -> io::Result<()> {
        // SAFETY: as for `enable`.
        check(unsafe { sys::ioctls::RESET(self.raw(), 0) }).map(drop)
    }

    /// `PERF_EVENT_IOC_PERIOD`: a new sample period (sampling events only;
    /// the kernel reads the value through the pointer).
    pub fn set_period(&self, period: u64) -> io::Result<()> {
        let value: u64 = period;
        // SAFETY: the kernel copies 8 bytes from the address passed as the
        // argument; `value` lives on this stack frame for the whole call.
        check(unsafe { sys::ioctls::PERIOD(self.raw(), &value as *const u64 as u64) }).map(drop)
    }

    /// Reads value, time enabled and time running.
    pub fn read(&self) -> Result<RawRead, ReadError> {
        let mut buf = [0u64; 3];
        // SAFETY: `buf` is 24 writable bytes and we pass its exact size.
        let n = unsafe {
            libc::read(
                self.raw(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                std::mem::size_of_val(&buf),
            )
        };
        match n {
            0 => Err(ReadError::ErrorState),
            n if n < 0 => Err(ReadError::Io(io::Error::last_os_error())),
            n if (n as usize) < std::mem::size_of_val(&buf) => Err(ReadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short perf read",
            ))),
            _ => Ok(RawRead {
                value: buf[0],
                time_enabled: buf[1],
                time_running: buf[2],
            }),
        }
    }

    /// Overflow notifications of this event become signal `sig`, sent to
    /// thread `tid` only: `F_SETOWN_EX(F_OWNER_TID)`, `F_SETSIG`, then
    /// `O_ASYNC`. No ring buffer is needed (see the module docs).
    pub fn signal_thread(&self, tid: pid_t, sig: c_int) -> io::Result<()> {
        let owner = FOwnerEx {
            type_: F_OWNER_TID,
            pid: tid,
        };
        // SAFETY: F_SETOWN_EX reads one `struct f_owner_ex` through the
        // pointer, which points to a live, correctly laid out value.
        check(unsafe { libc::fcntl(self.raw(), F_SETOWN_EX, &owner as *const FOwnerEx) })?;
        // SAFETY: F_SETSIG takes an integer argument.
        check(unsafe { libc::fcntl(self.raw(), F_SETSIG, sig) })?;
        // SAFETY: F_GETFL takes no argument.
        let flags = check(unsafe { libc::fcntl(self.raw(), libc::F_GETFL) })?;
        // SAFETY: F_SETFL takes an integer argument.
        check(unsafe { libc::fcntl(self.raw(), libc::F_SETFL, flags | libc::O_ASYNC) }).map(drop)
    }

    /// The thread that receives this event's signals (`F_GETOWN_EX`).
    pub fn owner(&self) -> io::Result<FOwnerEx> {
        let mut owner = FOwnerEx::default();
        // SAFETY: F_GETOWN_EX writes one `struct f_owner_ex` through the
        // pointer, which points to a live, writable value.
        check(unsafe { libc::fcntl(self.raw(), F_GETOWN_EX, &mut owner as *mut FOwnerEx) })?;
        Ok(owner)
    }
}
