//! The single node's user directory: `users.json` in the data dir.
//!
//! `sosqd user add` writes the file (atomically, owner-only, owned by the data dir's owner)
//! whether or not a daemon is running; a running daemon notices the change by the file's
//! modification time and size and reloads before the next authentication. Writers take
//! turns on the data dir's lock, so two admin commands at once do not lose a change.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::{Notice, Roster, StaffRole, User, UserError, USERS_FILE};

#[derive(Default)]
struct Cached {
    stamp: Option<(SystemTime, u64)>,
    roster: Roster,
}

/// The users file of one data dir, with a reload-on-change cache.
pub(super) struct FileUsers {
    path: PathBuf,
    cache: Mutex<Cached>,
}

impl FileUsers {
    /// The users file kept in `data_dir` (made by the first write).
    pub(super) fn open(data_dir: &Path) -> FileUsers {
        FileUsers {
            path: data_dir.join(USERS_FILE),
            cache: Mutex::new(Cached::default()),
        }
    }

    /// The file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a checked new user: its groups must exist and its name be free.
    pub(super) fn insert_user(&self, user: User) -> Result<(), UserError> {
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        file.check_groups(&user.groups)?;
        if file.users.iter().any(|other| other.name == user.name) {
            return Err(UserError::Exists(user.name));
        }
        file.users.push(user);
        self.write_file(&file)
    }

    /// See [`super::UserDirectory::set_groups`].
    pub(super) fn set_groups(&self, name: &str, groups: &[String]) -> Result<User, UserError> {
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        file.check_groups(groups)?;
        let Some(user) = file.users.iter_mut().find(|user| user.name == name) else {
            return Err(UserError::NotFound(name.to_string()));
        };
        if user.role == StaffRole::Admin {
            return Err(UserError::AdminGroups(name.to_string()));
        }
        user.groups = groups.to_vec();
        let changed = user.clone();
        self.write_file(&file)?;
        Ok(changed)
    }

    /// Adds a checked team name that is not `general`, public or not.
    pub(super) fn insert_group(&self, name: &str, public: bool) -> Result<(), UserError> {
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        if file.groups.iter().any(|g| g == name) {
            return Err(UserError::GroupExists(name.to_string()));
        }
        file.groups.push(name.to_string());
        file.set_public(name, public)?;
        self.write_file(&file)
    }

    /// See [`super::UserDirectory::set_group_public`].
    pub(super) fn set_public(&self, name: &str, public: bool) -> Result<(), UserError> {
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        file.set_public(name, public)?;
        self.write_file(&file)
    }

    /// Sets or removes the maintenance notice (already checked).
    pub(super) fn set_notice(&self, notice: Option<Notice>) -> Result<(), UserError> {
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        file.notice = notice;
        self.write_file(&file)
    }

    /// Removes a user, returning it.
    pub(super) fn remove_user(&self, name: &str) -> Result<User, UserError> {
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        let Some(index) = file.users.iter().position(|user| user.name == name) else {
            return Err(UserError::NotFound(name.to_string()));
        };
        let user = file.users.remove(index);
        self.write_file(&file)?;
        Ok(user)
    }

    /// Answers from the cache, reread first if the file changed since it was last read.
    pub(super) fn read<T>(&self, answer: impl FnOnce(&Roster) -> T) -> Result<T, UserError> {
        Ok(answer(&self.fresh()?.roster))
    }

    fn fresh(&self) -> Result<MutexGuard<'_, Cached>, UserError> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stamp = file_stamp(&self.path);
        if stamp != cache.stamp || stamp.is_none() {
            cache.roster = self.read_file()?;
            cache.stamp = stamp;
        }
        Ok(cache)
    }

    fn read_file(&self) -> Result<Roster, UserError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| UserError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Roster::default()),
            Err(cause) => Err(UserError::Io {
                path: self.path.clone(),
                cause: crate::fsutil::explain_denied(cause, &self.path),
            }),
        }
    }

    /// Makes the data dir if missing and waits for other writers of the file to finish:
    /// held from reading the file to writing it back.
    fn writers_turn(&self) -> Result<std::fs::File, UserError> {
        let io = |cause| UserError::Io {
            path: self.path.clone(),
            cause,
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        crate::fsutil::create_private_dir(dir).map_err(io)?;
        crate::fsutil::lock_dir(dir).map_err(io)
    }

    fn write_file(&self, file: &Roster) -> Result<(), UserError> {
        let io = |cause| UserError::Io {
            path: self.path.clone(),
            cause,
        };
        let text = serde_json::to_vec_pretty(file).map_err(|e| UserError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_private_atomically(&self.path, &text).map_err(io)
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
