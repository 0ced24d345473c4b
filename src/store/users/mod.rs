//! Experts and admins, and the teams (groups) they work: names, roles and the SHA-256 of
//! each access token (never the token itself); what the public status page shows besides
//! the queue: which teams are public and the maintenance notice (`notice.rs`); and the
//! named support profiles of the customers' `/help/<name>` pages (`profiles.rs`).
//!
//! Two backends keep them, with one set of rules (this module) and one contract suite
//! (`tests`):
//! - a single node keeps them in `users.json` in its data dir ([`file`]); `sosqd user add`
//!   writes the file whether or not a daemon runs, and the daemon rereads it when it
//!   changes;
//! - a cluster keeps them in its PostgreSQL store ([`postgres`]), so every node has the
//!   same staff; `sosqd user add --store URL` writes the database whether or not any node
//!   runs, and every node reads them from an in-memory copy it refreshes several times a
//!   second, so a revoke anywhere ends that user's connections on every node within about a
//!   second.

mod file;
mod notice;
mod postgres;
mod profile_sql;
mod profiles;
mod sql;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sosq::protocol::{Role, Timestamp};

use crate::broker::hash_secret;
use crate::config::Config;

pub use notice::{Notice, MAX_NOTICE_CHARS};
pub use profiles::{
    check_profile_name, Logo, LogoChange, LogoInfo, LogoKind, Profile, ProfileDraft,
    MAX_COMPANY_CHARS, MAX_LOGO_BYTES, MAX_PROFILES, MAX_PROFILE_NAME, MAX_WELCOME_CHARS,
};

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

    /// The word stored for the role (`users.json` and the `role` column say the same).
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Expert => "expert",
            StaffRole::Admin => "admin",
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

/// Why the user directory could not be used.
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
    /// The PostgreSQL store could not be reached, or refused the work.
    #[error("user directory in {store}: {cause}")]
    Database {
        /// The database, without its password.
        store: String,
        /// What failed, in the database's or the network's words.
        cause: String,
    },
    /// The daemon's copy of the PostgreSQL directory is too old to trust: fail closed.
    #[error(
        "user directory in {store} not read for {seconds}s (is PostgreSQL reachable?); no \
         staff token is accepted until it answers"
    )]
    Unavailable {
        /// The database, without its password.
        store: String,
        /// How old the last good read is.
        seconds: u64,
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
    /// The maintenance notice is unusable (empty, too long, not one line).
    #[error("{0}")]
    InvalidNotice(String),
    /// A support profile is unusable (its name, texts or logo); says what is wrong.
    #[error("{0}")]
    InvalidProfile(String),
    /// No support profile has that name.
    #[error("no support profile named {0:?}; `sosqd profile list` shows them")]
    NoSuchProfile(String),
    /// The directory holds [`MAX_PROFILES`] profiles already.
    #[error(
        "there are {MAX_PROFILES} support profiles already, the most kept; remove one with \
         `sosqd profile remove NAME` first"
    )]
    TooManyProfiles,
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

/// Every user and team of a directory at one moment: what `users.json` holds, and what the
/// PostgreSQL backend keeps in memory. The read rules live here, so both backends answer
/// alike.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Roster {
    users: Vec<User>,
    /// Team names besides the built-in `general`, in the order they were added.
    #[serde(default)]
    groups: Vec<String>,
    /// The teams (`general` may be one) whose waiting count and typical wait the public
    /// status page shows. Absent from files written before it existed (none is public),
    /// and left out when empty, so such files stay as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    public_groups: Vec<String>,
    /// The maintenance notice of the public status page, if one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notice: Option<Notice>,
    /// The named support profiles, in the order they were first saved. Left out when
    /// empty, so files without any stay as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    profiles: Vec<Profile>,
    /// The PostgreSQL backend's copy of the profiles' logos, by SHA-256; the file backend
    /// keeps each in a file of its own and leaves this empty (never in `users.json`).
    #[serde(skip)]
    logos: HashMap<String, Arc<Vec<u8>>>,
}

impl Roster {
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

    fn groups(&self) -> Vec<String> {
        std::iter::once(crate::broker::GENERAL.to_string())
            .chain(self.groups.iter().cloned())
            .collect()
    }

    fn group_exists(&self, name: &str) -> bool {
        name == crate::broker::GENERAL || self.groups.iter().any(|g| g == name)
    }

    /// The public teams, in the order [`Roster::groups`] lists them.
    fn public_groups(&self) -> Vec<String> {
        self.groups()
            .into_iter()
            .filter(|group| self.public_groups.contains(group))
            .collect()
    }

    /// Marks `name` public or not; an error if the team does not exist.
    fn set_public(&mut self, name: &str, public: bool) -> Result<(), UserError> {
        if !self.group_exists(name) {
            return Err(UserError::NoSuchGroup(name.to_string()));
        }
        self.public_groups.retain(|group| group != name);
        if public {
            self.public_groups.push(name.to_string());
        }
        Ok(())
    }

    fn profile(&self, name: &str) -> Option<Profile> {
        self.profiles
            .iter()
            .find(|profile| profile.name == name)
            .cloned()
    }

    /// Whether one more profile named `name` may be kept: a new name must leave the
    /// directory within [`MAX_PROFILES`].
    fn room_for_profile(&self, name: &str) -> Result<(), UserError> {
        let replaces = self.profiles.iter().any(|profile| profile.name == name);
        if replaces || self.profiles.len() < MAX_PROFILES {
            Ok(())
        } else {
            Err(UserError::TooManyProfiles)
        }
    }

    fn expert(&self, name: &str) -> Option<User> {
        self.users
            .iter()
            .find(|user| user.name == name && user.role == StaffRole::Expert)
            .cloned()
    }

    /// The token is hashed once, then compared with each stored hash in constant time (as
    /// `broker::secret_matches` compares one): hashing it again per user cost 2.3 ms per
    /// staff hello with 1,000 users.
    fn authenticate(&self, token: &str) -> Option<User> {
        let hash = hash_secret(token);
        self.users
            .iter()
            .find(|user| same_hash(&hash, &user.token_hash))
            .cloned()
    }

    /// Same name and same token hash: a revoked user, or one re-created with a new token,
    /// is not the user that authenticated earlier.
    fn still_valid(&self, user: &User) -> bool {
        self.users
            .iter()
            .any(|current| current.name == user.name && current.token_hash == user.token_hash)
    }
}

/// Whether two hex hashes (or any two secrets) are equal, in time that does not depend on
/// where they differ. The console compares its CSRF tokens with it too.
pub(crate) fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Where the users are kept.
enum Backend {
    File(file::FileUsers),
    Postgres(postgres::PgUsers),
}

/// The experts, admins and teams of one broker: a data dir's `users.json`, or a cluster's
/// PostgreSQL store. See the module documentation.
pub struct UserDirectory {
    backend: Backend,
}

impl UserDirectory {
    /// The directory kept in `data_dir`'s `users.json`.
    pub fn open(data_dir: &Path) -> UserDirectory {
        UserDirectory {
            backend: Backend::File(file::FileUsers::open(data_dir)),
        }
    }

    /// The directory kept in the PostgreSQL database at `url`, in `schema` if given (tests
    /// use a schema each), else in the connection's default one; makes its tables if
    /// missing and reads it once before returning.
    ///
    /// Errors: [`UserError::Database`] if the database cannot be reached, its tables cannot
    /// be made, or a newer sosqd wrote them.
    pub fn open_postgres(url: &str, schema: Option<&str>) -> Result<UserDirectory, UserError> {
        Ok(UserDirectory {
            backend: Backend::Postgres(postgres::PgUsers::open(url, schema)?),
        })
    }

    /// The directory `config` names: its PostgreSQL store for a cluster node, else the data
    /// dir's `users.json`.
    ///
    /// Errors: as [`UserDirectory::open_postgres`]; the file backend opens lazily and
    /// cannot fail here.
    pub fn from_config(config: &Config) -> Result<UserDirectory, UserError> {
        if !config.is_cluster() {
            return Ok(UserDirectory::open(&config.data_dir));
        }
        let directory = UserDirectory::open_postgres(config.store.trim(), None)?;
        tracing::info!(store = %directory.location(), "users and groups are read from the cluster's store");
        let left = config.data_dir.join(USERS_FILE);
        if left.exists() {
            // A node turned into a cluster node would otherwise lose its staff silently.
            tracing::warn!(
                file = %left.display(),
                store = %directory.location(),
                "the users file in the data dir is not used by a cluster node: its users \
                 and groups are read from the PostgreSQL store; add them there with \
                 `sosqd user add --store URL`"
            );
        }
        Ok(directory)
    }

    /// Where the directory is, for messages: the users file's path, or the database's
    /// address without its password.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::File(file) => {
                let path = file.path();
                std::path::absolute(path)
                    .unwrap_or_else(|_| path.to_path_buf())
                    .display()
                    .to_string()
            }
            Backend::Postgres(pg) => pg.shown().to_string(),
        }
    }

    /// Adds a user and returns its new access token: 256 random bits, shown once.
    pub fn add(&self, name: &str, role: StaffRole) -> Result<String, UserError> {
        self.add_in_groups(name, role, &[])
    }

    /// Adds a user working the given teams' queues; every group must exist.
    ///
    /// Errors: [`UserError::InvalidName`], [`UserError::AdminGroups`],
    /// [`UserError::NoSuchGroup`], [`UserError::Exists`], or the backend's.
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
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("sosq_{}", sosq::tls::hex(&bytes));
        let user = User {
            name: name.to_string(),
            role,
            token_hash: hash_secret(&token),
            created_at: Timestamp::now(),
            groups: groups.to_vec(),
        };
        match &self.backend {
            Backend::File(file) => file.insert_user(user)?,
            Backend::Postgres(pg) => pg.insert_user(user)?,
        }
        Ok(token)
    }

    /// Puts an existing expert on these teams instead of its current ones; its token and
    /// open connections stay (a connection works the teams it had when it said hello).
    ///
    /// Errors: [`UserError::NotFound`], [`UserError::NoSuchGroup`] (every group must
    /// exist, as for `add`), [`UserError::AdminGroups`] for an admin.
    pub fn set_groups(&self, name: &str, groups: &[String]) -> Result<User, UserError> {
        match &self.backend {
            Backend::File(file) => file.set_groups(name, groups),
            Backend::Postgres(pg) => pg.set_groups(name, groups),
        }
    }

    /// Defines a team (group) whose queue experts can be put on; not public.
    ///
    /// Errors: as [`UserDirectory::add_group_public`].
    pub fn add_group(&self, name: &str) -> Result<(), UserError> {
        self.add_group_public(name, false)
    }

    /// Defines a team (group) whose queue experts can be put on, `public` or not (see
    /// [`UserDirectory::public_groups`]), in one write.
    ///
    /// Errors: [`UserError::InvalidName`], [`UserError::GroupExists`] (`general` always
    /// does), or the backend's.
    pub fn add_group_public(&self, name: &str, public: bool) -> Result<(), UserError> {
        check_name(name)?;
        if name == crate::broker::GENERAL {
            return Err(UserError::GroupExists(name.to_string()));
        }
        match &self.backend {
            Backend::File(file) => file.insert_group(name, public),
            Backend::Postgres(pg) => pg.insert_group(name, public),
        }
    }

    /// Marks a team (`general` too) public or not: the public status page shows the
    /// waiting count and typical wait of the public teams only.
    ///
    /// Errors: [`UserError::NoSuchGroup`], or the backend's.
    pub fn set_group_public(&self, name: &str, public: bool) -> Result<(), UserError> {
        match &self.backend {
            Backend::File(file) => file.set_public(name, public),
            Backend::Postgres(pg) => pg.set_public(name, public),
        }
    }

    /// The public teams, `general` first if it is one, then in the order they were added:
    /// what the public status page may show (waiting count, typical wait).
    pub fn public_groups(&self) -> Result<Vec<String>, UserError> {
        self.read(Roster::public_groups)
    }

    /// The maintenance notice of the public status page, if one is set. A running daemon
    /// sees a change made anywhere (`sosqd notice set`, another node) at its next read on
    /// one node, within a reload (a quarter second) in a cluster.
    pub fn notice(&self) -> Result<Option<Notice>, UserError> {
        self.read(|roster| roster.notice.clone())
    }

    /// Sets the maintenance notice to `text` (trimmed), stamped now, or removes it
    /// (`None`); returns the notice now in force.
    ///
    /// Errors: [`UserError::InvalidNotice`] (empty, over [`MAX_NOTICE_CHARS`] characters,
    /// not one line), or the backend's.
    pub fn set_notice(&self, text: Option<&str>) -> Result<Option<Notice>, UserError> {
        let notice = text
            .map(|text| {
                notice::checked(text).map(|text| Notice {
                    text: text.to_string(),
                    set_at: Timestamp::now(),
                })
            })
            .transpose()?;
        match &self.backend {
            Backend::File(file) => file.set_notice(notice.clone())?,
            Backend::Postgres(pg) => pg.set_notice(notice.clone())?,
        }
        Ok(notice)
    }

    /// Removes a user; its token stops working, on open connections too.
    pub fn revoke(&self, name: &str) -> Result<User, UserError> {
        match &self.backend {
            Backend::File(file) => file.remove_user(name),
            Backend::Postgres(pg) => pg.remove_user(name),
        }
    }

    /// Every team, `general` first.
    pub fn groups(&self) -> Result<Vec<String>, UserError> {
        self.read(Roster::groups)
    }

    /// Whether a team exists.
    pub fn group_exists(&self, name: &str) -> Result<bool, UserError> {
        self.read(|roster| roster.group_exists(name))
    }

    /// The expert with this name, if any.
    pub fn expert(&self, name: &str) -> Result<Option<User>, UserError> {
        self.read(|roster| roster.expert(name))
    }

    /// Every user, in the order they were added.
    pub fn list(&self) -> Result<Vec<User>, UserError> {
        self.read(|roster| roster.users.clone())
    }

    /// The user holding `token`, if any.
    pub fn authenticate(&self, token: &str) -> Result<Option<User>, UserError> {
        self.read(|roster| roster.authenticate(token))
    }

    /// Whether `user` (as authenticated earlier) still holds a valid token: not revoked,
    /// not re-created with a new token.
    pub fn still_valid(&self, user: &User) -> Result<bool, UserError> {
        self.read(|roster| roster.still_valid(user))
    }

    /// Answers from the backend's current roster: the file's (reread when it changed), or
    /// the database's in-memory copy (refused when too old: fail closed).
    fn read<T>(&self, answer: impl FnOnce(&Roster) -> T) -> Result<T, UserError> {
        match &self.backend {
            Backend::File(file) => file.read(answer),
            Backend::Postgres(pg) => pg.read(answer),
        }
    }
}
