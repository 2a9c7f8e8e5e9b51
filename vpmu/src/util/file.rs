//! Reading a user-named input file with a bound: only regular files (a FIFO
//! or a device is refused at once, and opening one never blocks), and never
//! more than the caller's maximum in memory.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a bounded file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than {max} bytes")]
    TooLarge { max: u64 },
}

/// The contents of regular file `path`, at most `max` bytes.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    // O_NONBLOCK: opening a FIFO without a writer must not hang; it has no
    // effect on reads of a regular file.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular);
    }
    if meta.len() > max {
        return Err(FileError::TooLarge { max });
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // A file that grew since the fstat is caught by the bound.
    read_to_end_bounded(file, max, &mut buf)?;
    Ok(buf)
}

/// Appends what `r` yields until its end to `buf`, at most `max` bytes;
/// `TooLarge` if there is more (one byte beyond `max` is read to tell).
pub fn read_to_end_bounded(r: impl Read, max: u64, buf: &mut Vec<u8>) -> Result<(), FileError> {
    let start = buf.len();
    r.take(max.saturating_add(1)).read_to_end(buf)?;
    if (buf.len() - start) as u64 > max {
        return Err(FileError::TooLarge { max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_the_bound_only() {
        let dir = std::env::temp_dir().join(format!("vpmu-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ten");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_regular(&f, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_regular(&f, 9),
            Err(FileError::TooLarge { max: 9 })
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 1 << 20),
            Err(FileError::NotRegular)
        ));
        assert!(matches!(
            read_regular(&dir, 1 << 20),
            Err(FileError::NotRegular)
        ));
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer: must not block.
        assert!(matches!(
            read_regular(&fifo, 1 << 20),
            Err(FileError::NotRegular)
        ));
        assert!(matches!(
            read_regular(&dir.join("missing"), 1),
            Err(FileError::Io(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
