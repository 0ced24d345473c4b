//! One daemon per data dir: `sosqd serve` holds an exclusive lock on `sosqd.lock` in its
//! data dir for as long as it runs, so a second daemon on the same dir, which would split
//! the case set between two processes, fails at once and names the first one's pid.
//!
//! The lock is flock(2) on that file: the kernel drops it when the holder exits, however
//! it exits (`kill -9` included), so a lock file left behind never blocks a restart; only
//! the pid written in it goes stale until the next holder rewrites it.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fsutil;

/// The lock file's name in the data dir; it holds the running daemon's pid.
pub const LOCK_FILE: &str = "sosqd.lock";

/// Why the data dir could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process (a running sosqd) holds the lock.
    #[error(
        "data dir {dir} is in use by another sosqd (pid {pid}): stop that one first, or give \
         this one another --data-dir"
    )]
    InUse {
        /// The data dir, absolute.
        dir: PathBuf,
        /// The holder's pid as it wrote it, or "unknown".
        pid: String,
    },
    /// The dir or the lock file could not be made or opened.
    #[error("cannot lock data dir {dir}: {cause}")]
    Io {
        /// The data dir, absolute.
        dir: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// The data dir's lock, held until dropped (for a daemon: until it exits).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Makes `data_dir` (owner-only) if missing and locks it for this process, writing its
    /// pid into [`LOCK_FILE`]. Never waits.
    ///
    /// Errors: [`DataDirError::InUse`] if another process holds the lock;
    /// [`DataDirError::Io`] if the dir or file cannot be made or opened (a data dir owned
    /// by another user is refused with the fix, see `fsutil`).
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, DataDirError> {
        let shown = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        let io = |cause| DataDirError::Io {
            dir: shown.clone(),
            cause,
        };
        fsutil::create_private_dir(data_dir).map_err(io)?;
        let path = data_dir.join(LOCK_FILE);
        let (mut file, writable) = match fsutil::open_private(&path) {
            Ok(file) => (file, true),
            // flock works on a read-only handle too: on a read-only file system the lock
            // still keeps two daemons apart, and the case store then says what is wrong.
            Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
                (File::open(&path).map_err(|_| io(e))?, false)
            }
            Err(e) => return Err(io(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(DataDirError::InUse {
                    dir: shown,
                    pid: holder_pid(&path),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        if writable {
            file.set_len(0)
                .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
                .map_err(io)?;
        }
        Ok(DataDirLock { _file: file })
    }
}

/// Sets the process's file-creation mask to owner-only, so that whatever a library makes
/// in the data dir (SQLite's journal files, say) is private too. Linux only; elsewhere the
/// explicit 0600 of every file sosqd makes itself still applies.
pub fn private_umask() {
    #[cfg(target_os = "linux")]
    // SAFETY: umask only swaps the process's creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// The pid the holder wrote. It writes it just after taking the lock, so an empty file
/// is read again for a moment before giving up.
fn holder_pid(path: &Path) -> String {
    for _ in 0..20 {
        if let Ok(text) = std::fs::read_to_string(path) {
            let pid = text.trim();
            if !pid.is_empty() {
                return pid.to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    "unknown".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_held_data_dir_is_refused_naming_the_holder_and_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let held = DataDirLock::acquire(&data).unwrap();
        let lock_file = data.join(LOCK_FILE);
        let written = std::fs::read_to_string(&lock_file).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());
        let mode = std::fs::metadata(&lock_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // flock locks belong to one open file, so a second open in this process conflicts
        // just as another process would.
        let err = DataDirLock::acquire(&data).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains(&data.display().to_string()), "{err}");
        drop(held);
        std::fs::write(&lock_file, "999999\n").unwrap();
        let again = DataDirLock::acquire(&data);
        assert!(again.is_ok(), "a stale pid alone does not hold the dir");
        let written = std::fs::read_to_string(&lock_file).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());
    }
}
