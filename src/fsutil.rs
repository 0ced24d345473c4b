//! Files only the daemon's user may read: the data dir, the key, the users file, the case
//! store.
//!
//! Admin commands (`sosqd user add`, `sosqd fingerprint --create`) are often run as root
//! against the data dir of a daemon that runs as its own user. A root-owned 0600 file there
//! would lock that daemon out of its own key or users, so every file written here takes
//! the data dir's owner and group; a user who can do neither (not root, not the owner) is
//! refused with the reason and the fix before anything is left behind.

use std::fs::{File, Metadata};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Owner read and write, nothing for group and others.
const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and parents) with owner-only permissions if it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see the old
/// or the new content and never half of it; the file is owner-only (0600) and owned by
/// the directory's owner.
///
/// Errors: the directory cannot be written, or its owner differs from this user and this
/// user is not root (see [`refusal`]). The temporary file is removed on every error.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent(path);
    let tmp = temporary_beside(path);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(&tmp)
            .map_err(|e| explain_denied(e, &tmp))?;
        give_to_dir_owner(&file, dir)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    // The rename itself is durable only once the directory is synced.
    File::open(dir).and_then(|dir| dir.sync_all())
}

/// Opens `path` for reading and writing, creating it owner-only (0600) and owned by the
/// directory's owner if missing; an existing file is opened as it is.
///
/// Errors: as [`write_private_atomically`].
pub fn open_private(path: &Path) -> std::io::Result<File> {
    let dir = parent(path);
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)
    {
        Ok(file) => {
            if let Err(e) = give_to_dir_owner(&file, dir) {
                drop(file);
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
            Ok(file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| explain_denied(e, path)),
        Err(e) => Err(explain_denied(e, path)),
    }
}

/// Takes away group and other permissions from `path` if it exists and has any (files
/// made by older versions, or by SQLite under a loose umask). Returns whether it changed.
pub fn make_private(path: &Path) -> std::io::Result<bool> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
    Ok(true)
}

/// Holds an exclusive advisory lock (flock) on a directory until dropped: writers of the
/// same files (two `sosqd user add`, an identity being made) take turns. Blocks while
/// another process holds it.
pub fn lock_dir(dir: &Path) -> std::io::Result<File> {
    let handle = File::open(dir).map_err(|e| explain_denied(e, dir))?;
    handle.lock()?;
    Ok(handle)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A fresh name in `path`'s directory: two writers never share a temporary file.
fn temporary_beside(path: &Path) -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Gives `file` (just created, so owned by this user) the owner and group of `dir` when
/// they differ. Only root may give a file away; anyone else is refused.
fn give_to_dir_owner(file: &File, dir: &Path) -> std::io::Result<()> {
    let dir_meta = std::fs::metadata(dir)?;
    let mine = file.metadata()?;
    if mine.uid() == dir_meta.uid() {
        return Ok(());
    }
    match std::os::unix::fs::fchown(file, Some(dir_meta.uid()), Some(dir_meta.gid())) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(refusal(dir, &dir_meta)),
        Err(e) => Err(e),
    }
}

/// A permission error on `path` (a file in the data dir, or the dir itself) says whose the
/// file or dir is and what to do, instead of a bare "Permission denied": a file owned by
/// someone other than the dir's owner (left by an older sosqd run as root, say) is named
/// with the `chown` that gives it back.
pub fn explain_denied(e: std::io::Error, path: &Path) -> std::io::Error {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return e;
    }
    let dir = if path.is_dir() { path } else { parent(path) };
    let Ok(dir_meta) = std::fs::metadata(dir) else {
        return e;
    };
    match std::fs::metadata(path) {
        Ok(meta) if path != dir && meta.uid() != dir_meta.uid() => std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to {}, not to the data dir's owner {}: give it back, as root, \
                 with `chown {}:{} {}`",
                path.display(),
                owner_name(meta.uid()),
                owner_name(dir_meta.uid()),
                dir_meta.uid(),
                dir_meta.gid(),
                path.display()
            ),
        ),
        _ => refusal(dir, &dir_meta),
    }
}

/// Why this user may not write into `dir`, and the two ways out: run as the dir's owner,
/// or (when this user is the one meant to own it, as a daemon's user finding a dir an
/// admin command made as root) give the dir to this user.
fn refusal(dir: &Path, meta: &Metadata) -> std::io::Error {
    let uid = meta.uid();
    let owner = owner_name(uid);
    let sudo = user_name(uid).unwrap_or_else(|| format!("'#{uid}'"));
    let me = current_uid();
    let me_name = user_name(me).unwrap_or_else(|| me.to_string());
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!(
            "the data dir {dir} belongs to {owner}, and the files written there must be its \
             owner's: run the command as that user (`sudo -u {sudo} sosqd ...`) or as root; \
             or, if {me_name} should own it (the daemon's user), give it over as root: \
             `chown -R {me_name}: {dir}`",
            dir = dir.display()
        ),
    )
}

/// This process's effective uid.
fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A warning for an admin command about to make `dir` as root: the dir will be root's,
/// and a daemon running as its own user (the systemd unit's `sosqd`) could then not use
/// it. `None` when `dir` exists or this is not root.
pub fn root_makes_new_dir(dir: &Path) -> Option<String> {
    if current_uid() != 0 || dir.exists() {
        return None;
    }
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    Some(format!(
        "note: the data dir {shown} does not exist yet, so it is made now owned by root; \
         a daemon running as another user cannot use it. For the systemd unit, make it \
         first as that user's: `install -d -o sosqd -g sosqd -m 0700 {shown}` (or afterwards: \
         `chown -R sosqd: {shown}`)",
        shown = shown.display()
    ))
}

/// "user NAME (uid N)", or "uid N" for a uid without a name.
fn owner_name(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("user {name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The name of `uid` in /etc/passwd, if it has one; only for messages.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse() == Ok(uid)).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_is_private_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        write_private_atomically(&path, b"one").unwrap();
        write_private_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("users.json")]);
    }

    #[test]
    fn loose_modes_are_tightened_and_private_files_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.sqlite3");
        assert!(!make_private(&path).unwrap(), "a missing file is no error");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(make_private(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!make_private(&path).unwrap());
    }

    #[test]
    fn open_private_makes_an_owner_only_file_and_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sosqd.lock");
        let mut file = open_private(&path).unwrap();
        file.write_all(b"42").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(open_private(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"42", "reopening keeps it");
    }
}
