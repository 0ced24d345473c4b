//! The single node's user directory: `users.json` in the data dir.
//!
//! `sosqd user add` writes the file (atomically, owner-only, owned by the data dir's owner)
//! whether or not a daemon is running; a running daemon notices the change by the file's
//! modification time and size and reloads before the next authentication. Writers take
//! turns on the data dir's lock, so two admin commands at once do not lose a change.
//!
//! A support profile's logo is a file of its own beside `users.json`, named by the image's
//! SHA-256 (`profile-logo-<hash>`): written before `users.json` names it and removed only
//! after no profile names it, so a reader never finds a name without its image.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::profiles::{self, Checked, CheckedLogo};
use super::{
    Logo, Notice, Profile, Roster, StaffRole, User, UserError, MAX_LOGO_BYTES, USERS_FILE,
};

/// How a logo file's name starts; its SHA-256 follows.
const LOGO_FILE_PREFIX: &str = "profile-logo-";

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

    /// Saves a checked profile (see [`super::UserDirectory::save_profile`]).
    pub(super) fn save_profile(&self, checked: Checked) -> Result<Profile, UserError> {
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        let mut profile = checked.profile;
        if !file.group_exists(&profile.team) {
            return Err(UserError::NoSuchGroup(profile.team));
        }
        file.room_for_profile(&profile.name)?;
        let index = file.profiles.iter().position(|p| p.name == profile.name);
        profile.logo = match checked.logo {
            CheckedLogo::Keep => index.and_then(|i| file.profiles[i].logo.clone()),
            CheckedLogo::Remove => None,
            CheckedLogo::Set(info, bytes) => {
                // Before `users.json` names it; a failure after this leaves an unnamed
                // file, which the next write sweeps away.
                let path = self.logo_path(&info.sha256);
                crate::fsutil::write_private_atomically(&path, &bytes)
                    .map_err(|cause| UserError::Io { path, cause })?;
                Some(info)
            }
        };
        match index {
            Some(i) => file.profiles[i] = profile.clone(),
            None => file.profiles.push(profile.clone()),
        }
        self.write_file(&file)?;
        self.sweep_logos(&file);
        Ok(profile)
    }

    /// Removes a profile and its logo, returning the profile.
    pub(super) fn remove_profile(&self, name: &str) -> Result<Profile, UserError> {
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        let Some(index) = file.profiles.iter().position(|p| p.name == name) else {
            return Err(UserError::NoSuchProfile(name.to_string()));
        };
        let profile = file.profiles.remove(index);
        self.write_file(&file)?;
        self.sweep_logos(&file);
        Ok(profile)
    }

    /// The logo of profile `name`, read from its file and checked against its hash.
    pub(super) fn profile_logo(&self, name: &str) -> Result<Option<Logo>, UserError> {
        let Some(info) = self.read(|roster| roster.profile(name).and_then(|p| p.logo))? else {
            return Ok(None);
        };
        let corrupt = |message: String| UserError::Corrupt {
            path: self.path.clone(),
            message,
        };
        if !profiles::is_sha256_hex(&info.sha256) {
            return Err(corrupt(format!(
                "profile {name:?} names its logo {:?}, which is no SHA-256",
                info.sha256
            )));
        }
        let path = self.logo_path(&info.sha256);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Removed since the read above (the profile changed meanwhile): no logo now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => {
                let cause = crate::fsutil::explain_denied(cause, &path);
                return Err(UserError::Io { path, cause });
            }
        };
        if bytes.len() > MAX_LOGO_BYTES || profiles::sha256_hex(&bytes) != info.sha256 {
            return Err(UserError::Corrupt {
                path,
                message: "the logo file is not the image the users file names".into(),
            });
        }
        Ok(Some(Logo {
            kind: info.kind,
            bytes,
        }))
    }

    /// Where the logo with this SHA-256 is kept.
    fn logo_path(&self, sha256: &str) -> PathBuf {
        self.dir().join(format!("{LOGO_FILE_PREFIX}{sha256}"))
    }

    /// Removes the logo files no profile of `roster` (just written) names. Best effort: a
    /// file left behind costs disk space only, and the next write tries again.
    fn sweep_logos(&self, roster: &Roster) {
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(hash) = name.to_str().and_then(|n| n.strip_prefix(LOGO_FILE_PREFIX)) else {
                continue;
            };
            let named = roster
                .profiles
                .iter()
                .any(|p| p.logo.as_ref().is_some_and(|logo| logo.sha256 == hash));
            if !named {
                if let Err(error) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file = %entry.path().display(), %error, "cannot remove a logo no profile uses");
                }
            }
        }
    }

    /// The data dir.
    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
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
        let dir = self.dir();
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
