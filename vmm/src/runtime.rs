//! The private runtime directory where every `vmm run` serves its API
//! socket by default: `$XDG_RUNTIME_DIR/vmm/` (or `/run/vmm/` for root,
//! `$TMPDIR/vmm-UID/` when neither applies), mode 0700, one socket
//! `PID.sock` per VM. `vmm list` and `vmm stats` find running VMs there.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the runtime directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    #[error("runtime directory {0}: {1}")]
    Io(String, io::Error),
    #[error("runtime directory {0} is not a directory owned by this user with mode 0700")]
    Unsafe(String),
}

/// The runtime directory (not created).
pub fn dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("vmm"),
        // SAFETY: geteuid has no preconditions and cannot fail.
        _ if unsafe { libc::geteuid() } == 0 => PathBuf::from("/run/vmm"),
        // SAFETY: as above.
        _ => std::env::temp_dir().join(format!("vmm-{}", unsafe { libc::geteuid() })),
    }
}

/// The default socket of the VM run by process `pid`.
pub fn socket_of(pid: u32) -> PathBuf {
    dir().join(format!("{pid}.sock"))
}

/// Creates the runtime directory (mode 0700) if needed and checks that it
/// is ours and private.
pub fn ensure_dir() -> Result<PathBuf, RuntimeDirError> {
    let d = dir();
    let shown = || d.display().to_string();
    match std::fs::DirBuilder::new().mode(0o700).create(&d) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(RuntimeDirError::Io(shown(), e)),
    }
    let meta = std::fs::symlink_metadata(&d).map_err(|e| RuntimeDirError::Io(shown(), e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid {
        return Err(RuntimeDirError::Unsafe(shown()));
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        // Ours: make it private again.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| RuntimeDirError::Io(shown(), e))?;
    }
    Ok(d)
}

/// Whether process `pid` exists.
pub fn alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A VM socket found in the runtime directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub pid: u32,
    pub socket: PathBuf,
}

/// The sockets of running VMs in `dir`, by PID; sockets of dead PIDs are
/// removed on the way.
pub fn running_in(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".sock"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let path = e.path();
        if alive(pid) {
            out.push(Entry { pid, socket: path });
        } else if let Err(err) = std::fs::remove_file(&path) {
            log::debug!("removing stale socket {}: {err}", path.display());
        } else {
            log::info!("removed the stale socket {} of a VM gone", path.display());
        }
    }
    out.sort_by_key(|e| e.pid);
    out
}

/// [`running_in`] the runtime directory.
pub fn running() -> Vec<Entry> {
    running_in(&dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sockets_of_dead_pids_are_removed() {
        let d = std::env::temp_dir().join(format!("vmm-runtime-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let me = std::process::id();
        // PIDs above pid_max (at most 2^22) never exist.
        let dead = 1u32 << 23;
        std::fs::write(d.join(format!("{me}.sock")), b"").unwrap();
        std::fs::write(d.join(format!("{dead}.sock")), b"").unwrap();
        std::fs::write(d.join("other.txt"), b"").unwrap();
        let found = running_in(&d);
        assert_eq!(
            found,
            vec![Entry {
                pid: me,
                socket: d.join(format!("{me}.sock"))
            }]
        );
        assert!(!d.join(format!("{dead}.sock")).exists());
        assert!(d.join("other.txt").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
