//! Experts and admins: a small JSON file in the data dir holding names, roles and the
//! SHA-256 of each access token (never the token itself).
//!
//! `sosqd user add` writes the file (atomically, owner-only, owned by the data dir's owner)
//! whether or not a daemon is running; a running daemon notices the change by the file's
//! modification time and size and reloads before the next authentication. Writers take
//! turns on the data dir's lock, so two admin commands at once do not lose a change.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sosq::protocol::{Role, Timestamp};

use crate::broker::{hash_secret, secret_matches};

/// The file name inside the data dir.
pub const USERS_FILE: &str = "users.json";

/// A staff role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StaffRole {
    /// Works the queue.
    Expert,
    /// Runs the daemon.
    Admin,
}

impl StaffRole {
    /// The wire role.
    pub fn role(self) -> Role {
        match self {
            StaffRole::Expert => Role::Expert,
            StaffRole::Admin => Role::Admin,
        }
    }
}

/// One expert or admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name, shown to customers ("expert ana connected").
    pub name: String,
    /// What the user may do.
    pub role: StaffRole,
    /// SHA-256 (hex) of the access token.
    pub token_hash: String,
    /// When the user was added.
    pub created_at: Timestamp,
    /// The team queues an expert pulls from; none means the `general` team.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl User {
    /// The teams whose queues this user works: its groups, or `general` if it has none.
    pub fn teams(&self) -> Vec<String> {
        if self.groups.is_empty() {
            vec![crate::broker::GENERAL.to_string()]
        } else {
            self.groups.clone()
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    users: Vec<User>,
    /// Team names besides the built-in `general`.
    #[serde(default)]
    groups: Vec<String>,
}

/// Why the users file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Reading or writing failed.
    #[error("cannot access users file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not a users file.
    #[error("users file {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The name is taken.
    #[error(
        "a user named {0:?} already exists: change its groups with `sosqd user set {0} --group \
         GROUP`, or revoke it with `sosqd user revoke {0}` and add it again for a new token"
    )]
    Exists(String),
    /// Groups were given to an admin.
    #[error(
        "admins see and work every queue, so groups are for experts only: leave out --group \
         for admin {0:?}"
    )]
    AdminGroups(String),
    /// No user has that name.
    #[error("no user named {0:?}")]
    NotFound(String),
    /// The name is unusable.
    #[error("invalid name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-'")]
    InvalidName(String),
    /// The group is not defined.
    #[error("no group named {0:?}; add it with `sosqd group add {0}`")]
    NoSuchGroup(String),
    /// The group is already defined.
    #[error("a group named {0:?} already exists")]
    GroupExists(String),
}

fn check_name(name: &str) -> Result<(), UserError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(UserError::InvalidName(name.to_string()))
    }
}

#[derive(Default)]
struct Cached {
    stamp: Option<(SystemTime, u64)>,
    users: Vec<User>,
    groups: Vec<String>,
}

/// The users file of one data dir, with a reload-on-change cache.
pub struct UserDirectory {
    path: PathBuf,
    cache: Mutex<Cached>,
}

impl UserDirectory {
    /// The directory kept in `data_dir`.
    pub fn open(data_dir: &Path) -> UserDirectory {
        UserDirectory {
            path: data_dir.join(USERS_FILE),
            cache: Mutex::new(Cached::default()),
        }
    }

    /// Adds a user and returns its new access token: 256 random bits, shown once.
    pub fn add(&self, name: &str, role: StaffRole) -> Result<String, UserError> {
        self.add_in_groups(name, role, &[])
    }

    /// Adds a user working the given teams' queues; every group must exist.
    pub fn add_in_groups(
        &self,
        name: &str,
        role: StaffRole,
        groups: &[String],
    ) -> Result<String, UserError> {
        check_name(name)?;
        if role == StaffRole::Admin && !groups.is_empty() {
            return Err(UserError::AdminGroups(name.to_string()));
        }
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        file.check_groups(groups)?;
        if file.users.iter().any(|user| user.name == name) {
            return Err(UserError::Exists(name.to_string()));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("sosq_{}", sosq::tls::hex(&bytes));
        file.users.push(User {
            name: name.to_string(),
            role,
            token_hash: hash_secret(&token),
            created_at: Timestamp::now(),
            groups: groups.to_vec(),
        });
        self.write_file(&file)?;
        Ok(token)
    }

    /// Puts an existing expert on these teams instead of its current ones; its token and
    /// open connections stay (a connection works the teams it had when it said hello).
    ///
    /// Errors: [`UserError::NotFound`], [`UserError::NoSuchGroup`] (every group must
    /// exist, as for `add`), [`UserError::AdminGroups`] for an admin.
    pub fn set_groups(&self, name: &str, groups: &[String]) -> Result<User, UserError> {
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

    /// Defines a team (group) whose queue experts can be put on.
    pub fn add_group(&self, name: &str) -> Result<(), UserError> {
        check_name(name)?;
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        if name == crate::broker::GENERAL || file.groups.iter().any(|g| g == name) {
            return Err(UserError::GroupExists(name.to_string()));
        }
        file.groups.push(name.to_string());
        self.write_file(&file)
    }

    /// Every team, `general` first.
    pub fn groups(&self) -> Result<Vec<String>, UserError> {
        let cache = self.fresh()?;
        Ok(std::iter::once(crate::broker::GENERAL.to_string())
            .chain(cache.groups.iter().cloned())
            .collect())
    }

    /// Whether a team exists.
    pub fn group_exists(&self, name: &str) -> Result<bool, UserError> {
        Ok(name == crate::broker::GENERAL || self.fresh()?.groups.iter().any(|g| g == name))
    }

    /// The expert with this name, if any.
    pub fn expert(&self, name: &str) -> Result<Option<User>, UserError> {
        Ok(self
            .fresh()?
            .users
            .iter()
            .find(|user| user.name == name && user.role == StaffRole::Expert)
            .cloned())
    }

    /// Every user, as stored.
    pub fn list(&self) -> Result<Vec<User>, UserError> {
        Ok(self.read_file()?.users)
    }

    /// The user holding `token`, if any; rereads the file when it changed.
    pub fn authenticate(&self, token: &str) -> Result<Option<User>, UserError> {
        let cache = self.fresh()?;
        Ok(cache
            .users
            .iter()
            .find(|user| secret_matches(token, &user.token_hash))
            .cloned())
    }

    /// Whether `user` (as authenticated earlier) still holds a valid token: not revoked,
    /// not re-created with a new token.
    pub fn still_valid(&self, user: &User) -> Result<bool, UserError> {
        let cache = self.fresh()?;
        Ok(cache
            .users
            .iter()
            .any(|current| current.name == user.name && current.token_hash == user.token_hash))
    }

    /// Removes a user; its token stops working, on open connections too.
    pub fn revoke(&self, name: &str) -> Result<User, UserError> {
        let _turn = self.writers_turn()?;
        let mut file = self.read_file()?;
        let Some(index) = file.users.iter().position(|user| user.name == name) else {
            return Err(UserError::NotFound(name.to_string()));
        };
        let user = file.users.remove(index);
        self.write_file(&file)?;
        Ok(user)
    }

    /// The cache, reread first if the file changed since it was last read.
    fn fresh(&self) -> Result<std::sync::MutexGuard<'_, Cached>, UserError> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stamp = file_stamp(&self.path);
        if stamp != cache.stamp || stamp.is_none() {
            let file = self.read_file()?;
            cache.users = file.users;
            cache.groups = file.groups;
            cache.stamp = stamp;
        }
        Ok(cache)
    }

    fn read_file(&self) -> Result<UsersFile, UserError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| UserError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
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

    fn write_file(&self, file: &UsersFile) -> Result<(), UserError> {
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

impl UsersFile {
    /// Every group must exist before a user is put on it.
    fn check_groups(&self, groups: &[String]) -> Result<(), UserError> {
        match groups
            .iter()
            .find(|group| *group != crate::broker::GENERAL && !self.groups.contains(group))
        {
            Some(missing) => Err(UserError::NoSuchGroup(missing.clone())),
            None => Ok(()),
        }
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_their_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let users = UserDirectory::open(dir.path());
        let ana = users.add("ana", StaffRole::Expert).unwrap();
        let root = users.add("root", StaffRole::Admin).unwrap();
        assert!(ana.starts_with("sosq_") && ana.len() == 5 + 64);
        assert_eq!(users.authenticate(&ana).unwrap().unwrap().name, "ana");
        assert_eq!(
            users.authenticate(&root).unwrap().unwrap().role,
            StaffRole::Admin
        );
        assert!(users.authenticate("sosq_nope").unwrap().is_none());
        let stored = std::fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
        assert!(
            !stored.contains(&ana),
            "the token itself must not be stored"
        );
    }

    #[test]
    fn a_revoked_user_is_no_longer_valid_and_its_token_fails() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = UserDirectory::open(dir.path());
        let admin = UserDirectory::open(dir.path());
        let token = admin.add("ana", StaffRole::Expert).unwrap();
        let ana = daemon.authenticate(&token).unwrap().unwrap();
        assert!(daemon.still_valid(&ana).unwrap());
        admin.revoke("ana").unwrap();
        assert!(!daemon.still_valid(&ana).unwrap());
        assert!(daemon.authenticate(&token).unwrap().is_none());
        assert!(matches!(admin.revoke("ana"), Err(UserError::NotFound(_))));
        // Re-adding the name gives a new token; the old one stays dead.
        admin.add("ana", StaffRole::Expert).unwrap();
        assert!(!daemon.still_valid(&ana).unwrap());
    }

    #[test]
    fn names_are_unique_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let users = UserDirectory::open(dir.path());
        users.add("ana", StaffRole::Expert).unwrap();
        assert!(matches!(
            users.add("ana", StaffRole::Admin),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            users.add("ana maria", StaffRole::Admin),
            Err(UserError::InvalidName(_))
        ));
    }

    #[test]
    fn a_second_directory_sees_users_added_later() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = UserDirectory::open(dir.path());
        assert!(daemon.authenticate("sosq_x").unwrap().is_none());
        let token = UserDirectory::open(dir.path())
            .add("bo", StaffRole::Expert)
            .unwrap();
        assert_eq!(daemon.authenticate(&token).unwrap().unwrap().name, "bo");
    }

    #[test]
    fn set_changes_an_experts_groups_and_keeps_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let users = UserDirectory::open(dir.path());
        users.add_group("billing").unwrap();
        let token = users.add("ana", StaffRole::Expert).unwrap();
        let ana = users.authenticate(&token).unwrap().unwrap();
        assert_eq!(ana.teams(), vec!["general"]);
        let groups = vec!["billing".to_string(), "general".to_string()];
        users.set_groups("ana", &groups).unwrap();
        let now = users.authenticate(&token).unwrap().unwrap();
        assert_eq!(now.teams(), groups);
        assert!(users.still_valid(&ana).unwrap(), "same token, still valid");
        assert!(matches!(
            users.set_groups("ana", &["network".to_string()]),
            Err(UserError::NoSuchGroup(g)) if g == "network"
        ));
        assert!(matches!(
            users.set_groups("bo", &groups),
            Err(UserError::NotFound(_))
        ));
        users.add("root", StaffRole::Admin).unwrap();
        assert!(matches!(
            users.set_groups("root", &groups),
            Err(UserError::AdminGroups(_))
        ));
    }

    #[test]
    fn admins_take_no_groups_and_an_existing_name_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let users = UserDirectory::open(dir.path());
        users.add_group("billing").unwrap();
        let err = users
            .add_in_groups("root", StaffRole::Admin, &["billing".to_string()])
            .unwrap_err();
        assert!(matches!(err, UserError::AdminGroups(_)), "{err}");
        assert!(users.list().unwrap().is_empty(), "nothing added");
        users.add("ana", StaffRole::Expert).unwrap();
        let err = users.add("ana", StaffRole::Expert).unwrap_err().to_string();
        assert!(err.contains("sosqd user set ana"), "{err}");
        assert!(err.contains("sosqd user revoke ana"), "{err}");
    }

    #[test]
    fn concurrent_writers_lose_no_user() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|scope| {
            for i in 0..8 {
                let path = dir.path();
                scope.spawn(move || {
                    UserDirectory::open(path)
                        .add(&format!("expert{i}"), StaffRole::Expert)
                        .unwrap()
                });
            }
        });
        assert_eq!(UserDirectory::open(dir.path()).list().unwrap().len(), 8);
    }
}
