//! Whole copies of the case store, taken while the daemon serves (`sosqd backup`), and
//! putting one back (`sosqd restore`).
//!
//! A `cp` of `cases.sqlite3` under a running daemon copies the main file only, while the
//! newest commits (on a young store, all of them) are still in `cases.sqlite3-wal`. A backup
//! here goes through SQLite's online backup API on a read-only connection of its own: it
//! reads one consistent snapshot (every commit acknowledged before it started, nothing
//! half-written) without stopping or slowing the daemon's writer, and writes one
//! self-contained file (rollback journal, no `-wal`), owner-only, through a temporary file
//! and a rename so the target is never half a backup.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags};

use super::schema::{self, open_error, APPLICATION_ID, SCHEMA_VERSION};
use super::wal_check::{shm_path, stamp, wal_path};
use super::SqliteStore;
use crate::store::StoreError;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup file.
    pub file: PathBuf,
    /// Cases in it, open and finished.
    pub cases: u64,
    /// Its schema version.
    pub schema_version: i64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The case store now in place.
    pub store: PathBuf,
    /// Cases in it.
    pub cases: u64,
    /// Where the store that was there before went (with its `-wal` and `-shm`, renamed
    /// alike), if there was one.
    pub previous: Option<PathBuf>,
}

/// Writes a consistent copy of the case store in `data_dir` to `out`, while a daemon may be
/// serving from it.
///
/// Errors: no store in `data_dir` (nothing is created), a store that is not sosqd's,
/// `out` naming the live store, or I/O and SQLite failures (with the file). On error `out`
/// is untouched.
pub fn backup(data_dir: &Path, out: &Path) -> Result<BackupReport, StoreError> {
    let store = data_dir.join(SqliteStore::FILE_NAME);
    if !store.exists() {
        return Err(StoreError::NoStore { path: store });
    }
    refuse_the_live_store(&store, out)?;
    schema::check_file(&store)?;
    let source = read_only(&store)?;
    check_is_a_store(&source, &store)?;
    let folder = match out.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) => parent,
        None => Path::new("/"),
    };
    if !folder.is_dir() {
        return Err(StoreError::NoBackupFolder {
            file: out.to_path_buf(),
            folder: std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf()),
        });
    }
    let tmp = sibling(out, &format!(".tmp-{}", std::process::id()));
    // Owner-only, owned by whoever runs the backup (it goes wherever they keep backups).
    let report = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))
        .and_then(|_| copy_into(&source, &store, &tmp))
        .and_then(|(cases, schema_version)| {
            publish(&tmp, out)?;
            let bytes = std::fs::metadata(out).map_err(|e| io(out, e))?.len();
            Ok(BackupReport {
                file: out.to_path_buf(),
                cases,
                schema_version,
                bytes,
            })
        });
    if report.is_err() {
        remove_leftovers(&tmp);
    }
    report
}

/// Puts the backup `from` in place as the case store of `data_dir`: checks that it is a
/// sosqd case store this build can read, moves the current store (and its `-wal` and
/// `-shm`) aside as `cases.sqlite3.before-restore-<UTC time>`, and puts a copy of the
/// backup in its place, with no `-wal` or `-shm` beside it.
///
/// Errors: a daemon still has the store open ([`StoreError::InUse`]: stop it first),
/// `from` missing or not a sosqd store, or I/O and SQLite failures. The current store is
/// moved only once the copy of the backup is complete and checked.
pub fn restore(data_dir: &Path, from: &Path) -> Result<RestoreReport, StoreError> {
    let store = data_dir.join(SqliteStore::FILE_NAME);
    if !from.exists() {
        return Err(StoreError::NotAStore {
            path: from.to_path_buf(),
            reason: "there is no such file".into(),
        });
    }
    refuse_the_live_store(&store, from)?;
    schema::check_file(from).map_err(|_| StoreError::NotAStore {
        path: from.to_path_buf(),
        reason: "it is not an SQLite database".into(),
    })?;
    let source = read_only(from)?;
    check_is_a_store(&source, from)?;
    // Held to the end: no daemon can start on the data dir halfway through.
    let _lock = crate::datadir::DataDirLock::acquire(data_dir).map_err(|e| match e {
        crate::datadir::DataDirError::InUse { pid, .. } => StoreError::InUse {
            path: store.clone(),
            holder: format!("a running sosqd (pid {pid})"),
        },
        other => open_error(data_dir, other),
    })?;
    ensure_not_in_use(&store)?;
    let tmp = sibling(&store, &format!(".restoring-{}", std::process::id()));
    // Made by whoever runs the restore (root, often), but owned like the data dir, so the
    // daemon's user can open what it finds there.
    crate::fsutil::open_private(&tmp).map_err(|e| io(&tmp, e))?;
    let copied = copy_into(&source, from, &tmp);
    drop(source);
    let (cases, _) = match copied {
        Ok(copied) => copied,
        Err(e) => {
            remove_leftovers(&tmp);
            return Err(e);
        }
    };
    // Moved aside together, so the old store stays openable as it was, WAL and all.
    let aside = sibling(&store, &format!(".before-restore-{}", stamp()));
    let mut previous = None;
    for (from_path, to_path) in [
        (store.clone(), aside.clone()),
        (wal_path(&store), wal_path(&aside)),
        (shm_path(&store), shm_path(&aside)),
    ] {
        match std::fs::rename(&from_path, &to_path) {
            Ok(()) => {
                if from_path == store {
                    previous = Some(aside.clone());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                remove_leftovers(&tmp);
                return Err(io(&from_path, e));
            }
        }
    }
    publish(&tmp, &store)?;
    Ok(RestoreReport {
        store,
        cases,
        previous,
    })
}

/// Refuses `target` when it names the live store or one of its companion files.
fn refuse_the_live_store(store: &Path, target: &Path) -> Result<(), StoreError> {
    let canonical = |path: &Path| -> Option<PathBuf> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = std::fs::canonicalize(parent.unwrap_or(Path::new("."))).ok()?;
        Some(dir.join(path.file_name()?))
    };
    let (Some(store), Some(target)) = (canonical(store), canonical(target)) else {
        return Ok(());
    };
    if [store.clone(), wal_path(&store), shm_path(&store)].contains(&target) {
        return Err(StoreError::NotAStore {
            path: target,
            reason: "it is the live case store itself; name a file outside the data dir".into(),
        });
    }
    Ok(())
}

/// A read-only connection that sees the WAL's commits too.
fn read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_error(path, e))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// Checks that `conn` is a sosqd case store this build can read; its schema version.
fn check_is_a_store(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let pragma = |name: &str| -> Result<i64, StoreError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .map_err(|e| open_error(path, e))
    };
    let version = pragma("user_version")?;
    let not_a_store = |reason: &str| StoreError::NotAStore {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if version == 0 {
        return Err(not_a_store(
            "it holds no sosqd schema (empty: a `cp` of a running daemon's store without its \
             -wal looks like this; make backups with `sosqd backup`)",
        ));
    }
    if pragma("application_id")? != APPLICATION_ID {
        return Err(not_a_store("it is an SQLite database of another program"));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// Copies the database behind `source` into the new empty file `tmp` in one step (one
/// read snapshot), makes it a self-contained rollback-journal file, checks it, and returns
/// its case count and schema version.
fn copy_into(
    source: &Connection,
    source_path: &Path,
    tmp: &Path,
) -> Result<(u64, i64), StoreError> {
    let mut dest = Connection::open(tmp).map_err(|e| open_error(tmp, e))?;
    {
        use rusqlite::backup::StepResult;
        let backup = Backup::new(source, &mut dest).map_err(|e| io(source_path, e))?;
        // -1: every page in one step, under one read transaction, so the copy is one
        // snapshot. Busy or locked is retried a while (never copied half-changed).
        let mut tries = 0;
        loop {
            match backup.step(-1).map_err(|e| io(source_path, e))? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked if tries < 200 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => {
                    return Err(io(
                        source_path,
                        format!("the backup did not finish: {other:?}"),
                    ))
                }
            }
        }
    }
    let checked = (|| -> rusqlite::Result<(String, String, i64, i64)> {
        let mode: String = dest.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        let check: String = dest.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        let cases: i64 = dest.query_row("SELECT count(*) FROM cases", [], |r| r.get(0))?;
        let version: i64 = dest.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok((mode, check, cases, version))
    })()
    .map_err(|e| io(tmp, e))?;
    let (mode, check, cases, version) = checked;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(io(tmp, format!("cannot leave WAL mode (got {mode})")));
    }
    if check != "ok" {
        return Err(io(tmp, format!("the copy fails SQLite's check: {check}")));
    }
    dest.close().map_err(|(_, e)| io(tmp, e))?;
    std::fs::File::open(tmp)
        .and_then(|file| file.sync_all())
        .map_err(|e| io(tmp, e))?;
    Ok((u64::try_from(cases).unwrap_or(0), version))
}

/// Renames `tmp` to `target` and makes the rename durable.
fn publish(tmp: &Path, target: &Path) -> Result<(), StoreError> {
    std::fs::rename(tmp, target).map_err(|e| io(target, e))?;
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io(dir, e))
}

/// Fails with [`StoreError::InUse`] while another process has the store open: every
/// connection to a WAL database holds a shared lock on it, so an exclusive lock is only
/// granted once no daemon (or other reader) is left. When it is granted, closing this
/// connection checkpoints any WAL into the main file, so the store moved aside is whole.
fn ensure_not_in_use(store: &Path) -> Result<(), StoreError> {
    if !store.exists() {
        return Ok(());
    }
    let conn = match Connection::open_with_flags(store, OpenFlags::SQLITE_OPEN_READ_WRITE) {
        Ok(conn) => conn,
        // Not openable as SQLite: no daemon can be serving from it either.
        Err(_) => return Ok(()),
    };
    let attempt = conn.busy_timeout(Duration::ZERO).and_then(|()| {
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;")
    });
    match attempt {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            Err(StoreError::InUse {
                path: store.to_path_buf(),
                holder: "another process (SQLite reports it locked)".into(),
            })
        }
        Err(_) => Ok(()),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_leftovers(tmp: &Path) {
    let _ = std::fs::remove_file(tmp);
    let _ = std::fs::remove_file(sibling(tmp, "-journal"));
}

fn io(path: &Path, cause: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        cause: cause.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Persist;
    use crate::store::CaseStore;
    use std::os::unix::fs::PermissionsExt;

    async fn store_with_cases(dir: &Path, n: u64) -> SqliteStore {
        let store = SqliteStore::open_in(dir).unwrap();
        let records = (1..=n)
            .map(|i| Persist::Save(super::super::tests::record(i)))
            .collect();
        store.submit(records).await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_backup_of_a_live_store_has_every_committed_case_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let _live = store_with_cases(dir.path(), 3).await;
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("cases.backup");
        let report = backup(dir.path(), &out).unwrap();
        assert_eq!(report.cases, 3);
        assert_eq!(report.schema_version, SCHEMA_VERSION);
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!wal_path(&out).exists(), "self-contained");
        let names: Vec<_> = std::fs::read_dir(out_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["cases.backup".to_string()], "no temp file left");
    }

    #[tokio::test]
    async fn a_backup_into_a_missing_folder_names_the_folder_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let _live = store_with_cases(dir.path(), 1).await;
        let out_dir = tempfile::tempdir().unwrap();
        let folder = out_dir.path().join("sosqd");
        let error = backup(dir.path(), &folder.join("cases.backup")).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, StoreError::NoBackupFolder { .. }),
            "{message}"
        );
        assert!(
            message.contains(&format!("the folder {} does not exist", folder.display())),
            "{message}"
        );
        assert!(!folder.exists());
    }

    #[tokio::test]
    async fn restore_puts_the_backup_in_place_and_keeps_the_old_store_aside() {
        let old = tempfile::tempdir().unwrap();
        drop(store_with_cases(old.path(), 2).await);
        let out = old.path().join("two.backup");
        backup(old.path(), &out).unwrap();

        let target = tempfile::tempdir().unwrap();
        drop(store_with_cases(target.path(), 5).await);
        let report = restore(target.path(), &out).unwrap();
        assert_eq!(report.cases, 2);
        let previous = report.previous.expect("the old store was moved aside");
        assert!(previous
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("cases.sqlite3.before-restore-"));
        assert!(!wal_path(&report.store).exists());
        let restored = SqliteStore::open_in(target.path()).unwrap();
        assert!(restored
            .get(super::super::tests::record(2).code)
            .unwrap()
            .is_some());
        assert!(restored
            .get(super::super::tests::record(5).code)
            .unwrap()
            .is_none());
        let kept = SqliteStore::open(&previous).unwrap();
        assert!(kept
            .get(super::super::tests::record(5).code)
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn restore_refuses_while_the_store_is_open_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let live = store_with_cases(dir.path(), 1).await;
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("one.backup");
        backup(dir.path(), &out).unwrap();
        let err = restore(dir.path(), &out).unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
        drop(live);
        assert_eq!(restore(dir.path(), &out).unwrap().cases, 1);
    }

    #[test]
    fn backup_and_restore_refuse_what_is_not_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let err = backup(dir.path(), &dir.path().join("x")).unwrap_err();
        assert!(matches!(err, StoreError::NoStore { .. }), "{err}");
        assert!(
            !dir.path().join(SqliteStore::FILE_NAME).exists(),
            "nothing made"
        );
        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, "not a database").unwrap();
        let err = restore(dir.path(), &notes).unwrap_err();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
        let empty = dir.path().join("empty.sqlite3");
        Connection::open(&empty)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA user_version = 0;")
            .unwrap();
        let err = restore(dir.path(), &empty).unwrap_err().to_string();
        assert!(err.contains("no sosqd schema"), "{err}");
        drop(SqliteStore::open_in(dir.path()).unwrap());
        let live = dir.path().join(SqliteStore::FILE_NAME);
        let err = backup(dir.path(), &live).unwrap_err().to_string();
        assert!(err.contains("live case store"), "{err}");
    }
}
