//! Start-up check for a store that lost its write-ahead log.
//!
//! In WAL mode the newest commits live in `cases.sqlite3-wal` until a checkpoint copies
//! them into the main file; on a young store that is everything, schema included. So a
//! `cp cases.sqlite3` taken while a daemon runs is an empty database, and SQLite opens it
//! without a word. Two states are recognisable on disk, and the daemon says so loudly
//! (rules chosen so a store sosqd itself left, cleanly or by a crash, never matches):
//!
//! 1. **Copy without its WAL**: the main file's header says WAL mode, it has no tables at
//!    all (`user_version` 0), and no `-wal` file (or an empty one) lies beside it. sosqd
//!    commits its schema in the same start that switches the file to WAL, and SQLite
//!    deletes the `-wal` only after checkpointing it into the main file, so this is a copy
//!    of a live store (or, rarely, a first start killed within its first milliseconds).
//! 2. **A WAL SQLite could not use**: a `-wal` holding at least one whole frame lay beside
//!    the store, but SQLite found no valid frame in it (damaged, truncated, or not the log
//!    of this file). Its content is not in the store; the file is copied aside before the
//!    first write would overwrite it.
//!
//! What cannot be told apart on disk: a copy taken after some checkpoints, which holds the
//! older cases and silently misses the newest. Only `sosqd backup` makes a whole copy.

use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// Bytes of the WAL file header; frames follow.
const WAL_HEADER: u64 = 32;
/// Bytes of a WAL frame header; the page follows.
const FRAME_HEADER: u64 = 24;

/// What lay on disk before SQLite touched the store: the evidence its own recovery erases.
#[derive(Debug, Clone)]
pub struct Found {
    /// The main file's header says WAL mode (read and write versions 2).
    wal_mode: bool,
    /// The main file's page size (4096 if unreadable).
    page_size: u64,
    /// Size of `-wal`, if the file exists.
    wal_bytes: Option<u64>,
}

/// The `-wal` file of the database at `path`.
pub fn wal_path(path: &Path) -> PathBuf {
    sibling(path, "-wal")
}

/// The `-shm` file of the database at `path`.
pub fn shm_path(path: &Path) -> PathBuf {
    sibling(path, "-shm")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl Found {
    /// Looks at the store file and its `-wal` without opening them through SQLite.
    pub fn inspect(path: &Path) -> Found {
        let mut header = Vec::with_capacity(100);
        if let Ok(file) = std::fs::File::open(path) {
            let _ = file.take(100).read_to_end(&mut header);
        }
        let wal_mode = header.len() >= 20 && header[18] == 2 && header[19] == 2;
        let page_size = match header.get(16..18) {
            Some(&[1, 0]) => 65_536,
            Some(&[high, low]) if u16::from_be_bytes([high, low]) >= 512 => {
                u64::from(u16::from_be_bytes([high, low]))
            }
            _ => 4096,
        };
        let wal_bytes = std::fs::metadata(wal_path(path)).ok().map(|m| m.len());
        Found {
            wal_mode,
            page_size,
            wal_bytes,
        }
    }

    /// The loud warnings this store deserves (see the module documentation), given `conn`
    /// that has just opened it (SQLite's recovery done, sosqd's migrations not yet run).
    /// Copies an unusable `-wal` aside first, so the evidence survives the first write.
    pub fn warnings(&self, conn: &Connection, path: &Path) -> Vec<String> {
        let mut warnings = Vec::new();
        let has_schema = schema_present(conn);
        let wal_empty = self.wal_bytes.unwrap_or(0) == 0;
        if self.wal_mode && wal_empty && has_schema == Some(false) {
            warnings.push(format!(
                "{} looks like a copy that lost its WAL: the file is in WAL mode but holds \
                 no tables, and there is no {} beside it. A `cp` of a running daemon's store \
                 copies only the main file while the cases are still in the -wal, so this \
                 copy is EMPTY: sosqd starts with no cases. To restore, stop sosqd and run \
                 `sosqd restore FILE` with a file written by `sosqd backup`",
                path.display(),
                file_name(&wal_path(path)),
            ));
        }
        let one_frame = WAL_HEADER + FRAME_HEADER + self.page_size;
        let wal_bytes = self.wal_bytes.unwrap_or(0);
        if wal_bytes >= one_frame && frames_in_wal(conn) == Some(0) {
            let wal = wal_path(path);
            let kept = sibling(path, &format!("-wal.unused-{}", stamp()));
            let kept_note = match std::fs::copy(&wal, &kept) {
                Ok(_) => format!("it is kept as {}", kept.display()),
                Err(e) => format!("it could not be kept ({e}) and will be overwritten"),
            };
            warnings.push(format!(
                "{} held {wal_bytes} bytes that SQLite could not use (damaged, or not the log \
                 of {}): the changes in it are NOT in the case store, which has {}; {kept_note}. \
                 To restore, stop sosqd and run `sosqd restore FILE` with a file written by \
                 `sosqd backup`",
                wal.display(),
                file_name(path),
                match count_cases(conn) {
                    Some(0) | None => "no cases".to_string(),
                    Some(n) => format!("{n} cases"),
                },
            ));
        }
        warnings
    }
}

/// Whether the database has any table or a schema version: `None` if it cannot be read.
fn schema_present(conn: &Connection) -> Option<bool> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .ok()?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )
        .ok()?;
    Some(version != 0 || tables != 0)
}

/// Valid frames SQLite found in the WAL (a passive checkpoint reports them, and copies
/// them into the main file as SQLite would anyway); `None` if it cannot tell.
fn frames_in_wal(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
        .ok()
}

fn count_cases(conn: &Connection) -> Option<i64> {
    conn.query_row("SELECT count(*) FROM cases", [], |row| row.get(0))
        .ok()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The current UTC time as `20260102T030405Z`, for file names.
pub fn stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    /// A store a daemon is still writing: its file and `-wal` as a live daemon holds them.
    fn live_store(dir: &Path) -> (SqliteStore, PathBuf) {
        let store = SqliteStore::open_in(dir).unwrap();
        let path = store.path().to_path_buf();
        (store, path)
    }

    fn open_and_warn(path: &Path) -> Vec<String> {
        let found = Found::inspect(path);
        let conn = Connection::open(path).unwrap();
        found.warnings(&conn, path)
    }

    #[test]
    fn a_copy_of_a_live_store_without_its_wal_is_called_out() {
        let live = tempfile::tempdir().unwrap();
        let (_store, path) = live_store(live.path());
        let copy_dir = tempfile::tempdir().unwrap();
        let copy = copy_dir.path().join(SqliteStore::FILE_NAME);
        std::fs::copy(&path, &copy).unwrap();
        let warnings = open_and_warn(&copy);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("looks like a copy that lost its WAL")
                && warnings[0].contains(&copy.display().to_string())
                && warnings[0].contains("sosqd restore"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_store_sosqd_left_cleanly_or_by_a_crash_or_a_new_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SqliteStore::FILE_NAME);
        assert!(open_and_warn(&path).is_empty(), "a new store");
        drop(SqliteStore::open(&path).unwrap());
        assert!(open_and_warn(&path).is_empty(), "after a clean close");
        // A crash: the -wal stays with the commits in it, and SQLite uses it.
        let crashed = tempfile::tempdir().unwrap();
        let (_live, live_path) = live_store(crashed.path());
        let copy_dir = tempfile::tempdir().unwrap();
        let copy = copy_dir.path().join(SqliteStore::FILE_NAME);
        std::fs::copy(&live_path, &copy).unwrap();
        std::fs::copy(wal_path(&live_path), wal_path(&copy)).unwrap();
        assert!(
            open_and_warn(&copy).is_empty(),
            "a crash leaves a usable WAL"
        );
    }

    #[test]
    fn a_wal_sqlite_cannot_use_is_called_out_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SqliteStore::FILE_NAME);
        drop(SqliteStore::open(&path).unwrap());
        let garbage = vec![0x5Au8; 3 * 4096];
        std::fs::write(wal_path(&path), &garbage).unwrap();
        let warnings = open_and_warn(&path);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("could not use") && warnings[0].contains("no cases"),
            "{warnings:?}"
        );
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().contains("-wal.unused-"))
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(std::fs::read(kept[0].path()).unwrap(), garbage);
    }
}
