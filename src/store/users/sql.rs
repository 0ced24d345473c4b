//! The PostgreSQL user directory's tables, migrations and statements.
//!
//! The tables sit beside the case store's, in the same schema; their names start with
//! `sosq_` (like the case store's `sosq_meta`), and their schema version is their own
//! (`sosq_users_meta`), so the user directory and the case store migrate independently.
//! Every write is one transaction; reads take staff, teams and the status page in one
//! statement (one snapshot of those tables), then the support profiles in a second
//! (`profile_sql.rs`): a profile refers to a team only, and teams are never removed, so
//! the two need no common snapshot.

use sosq::protocol::Timestamp;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, Row};

use super::profile_sql;
use super::profiles::Checked;
use super::{Notice, Profile, Roster, StaffRole, User, UserError};

/// Schema migrations, in order; the version is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: staff and teams. `seq` keeps the order things were added in (listings, and the
    // order `sosqd group list` shows); `groups` is the expert's teams in its own order.
    "CREATE TABLE sosq_groups (
         name TEXT PRIMARY KEY,
         seq BIGSERIAL NOT NULL
     );
     CREATE TABLE sosq_users (
         name TEXT PRIMARY KEY,
         role TEXT NOT NULL CHECK (role IN ('expert', 'admin')),
         token_hash TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         groups TEXT[] NOT NULL,
         seq BIGSERIAL NOT NULL
     );",
    // 2: the public status page: which teams are public (`general` may be, though it has
    // no row in sosq_groups) and the maintenance notice (one row at most). New tables
    // only, so the rows of schema 1 stay as they are.
    "CREATE TABLE sosq_public_groups (
         name TEXT PRIMARY KEY,
         seq BIGSERIAL NOT NULL
     );
     CREATE TABLE sosq_notice (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         text TEXT NOT NULL,
         set_at BIGINT NOT NULL
     );",
    // 3: named support profiles (the customers' /help/<name> pages). The logo is a
    // column of the profile's row with its hash beside it, so a reload fetches the image
    // only when the hash is new to it. New table only, as 2.
    "CREATE TABLE sosq_profiles (
         name TEXT PRIMARY KEY,
         team TEXT NOT NULL,
         priorities TEXT[] NOT NULL,
         welcome TEXT,
         company TEXT,
         saved_at BIGINT NOT NULL,
         logo_kind TEXT CHECK (logo_kind IN ('png', 'jpeg')),
         logo_sha256 TEXT,
         logo BYTEA,
         seq BIGSERIAL NOT NULL,
         CHECK ((logo_kind IS NULL) = (logo IS NULL) AND (logo IS NULL) = (logo_sha256 IS NULL))
     );",
];

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Why a statement failed, in the database's words when it has some.
pub(super) fn failure(error: tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => error.to_string(),
    }
}

/// Makes the tables if missing (in `schema`, made if missing, when given) and brings them to
/// [`SCHEMA_VERSION`]; refuses tables a newer sosqd wrote. Safe to run from several
/// processes at once: the version row is locked while migrating.
pub(super) async fn migrate(client: &mut Client, schema: Option<&str>) -> Result<(), String> {
    let mut bootstrap = String::new();
    if let Some(schema) = schema {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!("{schema:?} is not a plain schema name"));
        }
        bootstrap = format!("CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema};");
    }
    bootstrap.push_str(
        "CREATE TABLE IF NOT EXISTS sosq_users_meta (
             id INTEGER PRIMARY KEY,
             version INTEGER NOT NULL
         );
         INSERT INTO sosq_users_meta (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    );
    // Two processes creating the same schema or table at once can make one of them fail on
    // the catalog's unique index although the object now exists: once more then succeeds.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match client.batch_execute(&bootstrap).await {
            Ok(()) => break,
            Err(e)
                if attempts < 3
                    && matches!(
                        e.code(),
                        Some(
                            &SqlState::UNIQUE_VIOLATION
                                | &SqlState::DUPLICATE_TABLE
                                | &SqlState::DUPLICATE_SCHEMA
                        )
                    ) => {}
            Err(e) => return Err(failure(e)),
        }
    }
    let tx = client.transaction().await.map_err(failure)?;
    let found: i32 = tx
        .query_one(
            "SELECT version FROM sosq_users_meta WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(failure)?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(format!(
            "the database holds user directory schema {found}, newer than this sosqd's \
             {SCHEMA_VERSION}: run a sosqd at least as new as the one that wrote it"
        ));
    }
    for (done, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let next = done as i32 + 1;
        tx.batch_execute(migration)
            .await
            .map_err(|e| format!("migration to user schema {next} failed: {}", failure(e)))?;
        tx.execute(
            "UPDATE sosq_users_meta SET version = $1 WHERE id = 1",
            &[&next],
        )
        .await
        .map_err(failure)?;
        tracing::info!(version = next, "user directory schema migrated");
    }
    tx.commit().await.map_err(failure)
}

/// Every user and team, the public teams and the notice, in the order they were added:
/// one statement, so one consistent view of those tables (the notice's words ride in the
/// `name` column, its time in `created_at`); then the support profiles, with the logos
/// of `known` (the copy being replaced) kept rather than fetched again.
pub(super) async fn roster(client: &impl GenericClient, known: &Roster) -> Result<Roster, String> {
    let rows = client
        .query(
            "SELECT 'user' AS kind, name, role, token_hash, created_at, groups, seq
                 FROM sosq_users
             UNION ALL
             SELECT 'group', name, NULL::text, NULL::text, NULL::bigint, NULL::text[], seq
                 FROM sosq_groups
             UNION ALL
             SELECT 'public', name, NULL::text, NULL::text, NULL::bigint, NULL::text[], seq
                 FROM sosq_public_groups
             UNION ALL
             SELECT 'notice', text, NULL::text, NULL::text, set_at, NULL::text[], id
                 FROM sosq_notice
             ORDER BY kind DESC, seq",
            &[],
        )
        .await
        .map_err(failure)?;
    let mut roster = Roster::default();
    for row in &rows {
        let kind: &str = row.try_get(0).map_err(failure)?;
        match kind {
            "group" => roster.groups.push(row.try_get(1).map_err(failure)?),
            "public" => roster.public_groups.push(row.try_get(1).map_err(failure)?),
            "notice" => {
                let set_at: i64 = row.try_get(4).map_err(failure)?;
                roster.notice = Some(Notice {
                    text: row.try_get(1).map_err(failure)?,
                    set_at: Timestamp(u64::try_from(set_at).unwrap_or(0)),
                });
            }
            _ => roster.users.push(user_from(row, 1)?),
        }
    }
    (roster.profiles, roster.logos) = profile_sql::profiles(client, &known.logos).await?;
    Ok(roster)
}

/// A user from its columns `name, role, token_hash, created_at, groups` from `first` on.
fn user_from(row: &Row, first: usize) -> Result<User, String> {
    let name: String = row.try_get(first).map_err(failure)?;
    let role = match row.try_get::<_, &str>(first + 1).map_err(failure)? {
        "expert" => StaffRole::Expert,
        "admin" => StaffRole::Admin,
        other => return Err(format!("user {name:?} has the unknown role {other:?}")),
    };
    let created_at: i64 = row.try_get(first + 3).map_err(failure)?;
    Ok(User {
        role,
        token_hash: row.try_get(first + 2).map_err(failure)?,
        created_at: Timestamp(u64::try_from(created_at).unwrap_or(0)),
        groups: row.try_get(first + 4).map_err(failure)?,
        name,
    })
}

/// A write the directory makes, each in a transaction of its own.
#[derive(Debug)]
pub(super) enum Write {
    /// Add a checked user (its name and role rules already hold).
    AddUser(User),
    /// Put an expert on these teams.
    SetGroups(String, Vec<String>),
    /// Define a team (not `general`), public or not.
    AddGroup(String, bool),
    /// Mark a team (`general` too) public or not.
    SetPublic(String, bool),
    /// Set or remove the maintenance notice (already checked).
    SetNotice(Option<Notice>),
    /// Remove a user.
    Revoke(String),
    /// Save a checked support profile.
    SaveProfile(Checked),
    /// Remove a support profile.
    RemoveProfile(String),
}

/// What a write gives back.
#[derive(Debug)]
pub(super) enum Written {
    /// Nothing to tell.
    Nothing,
    /// The user it changed or removed.
    User(User),
    /// The profile it saved or removed.
    Profile(Profile),
}

/// Runs `write` in one transaction. The outer error is the database's (the caller names
/// the store); the inner one the directory's rules (the user exists, no such group...).
pub(super) async fn apply(
    client: &mut Client,
    write: Write,
) -> Result<Result<Written, UserError>, String> {
    let tx = client.transaction().await.map_err(failure)?;
    let outcome = match write {
        Write::AddUser(user) => add_user(&tx, user).await?.map(|()| Written::Nothing),
        Write::SetGroups(name, groups) => set_groups(&tx, name, groups).await?.map(Written::User),
        Write::AddGroup(name, public) => {
            let added = tx
                .execute(
                    "INSERT INTO sosq_groups (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                    &[&name],
                )
                .await
                .map_err(failure)?;
            if added == 0 {
                Err(UserError::GroupExists(name))
            } else {
                set_public(&tx, name, public)
                    .await?
                    .map(|()| Written::Nothing)
            }
        }
        Write::SetPublic(name, public) => set_public(&tx, name, public)
            .await?
            .map(|()| Written::Nothing),
        Write::SetNotice(notice) => {
            match notice {
                Some(notice) => {
                    let set_at = i64::try_from(notice.set_at.0).unwrap_or(i64::MAX);
                    tx.execute(
                        "INSERT INTO sosq_notice (id, text, set_at) VALUES (1, $1, $2)
                         ON CONFLICT (id) DO UPDATE SET text = excluded.text,
                             set_at = excluded.set_at",
                        &[&notice.text, &set_at],
                    )
                    .await
                    .map_err(failure)?;
                }
                None => {
                    tx.execute("DELETE FROM sosq_notice", &[])
                        .await
                        .map_err(failure)?;
                }
            }
            Ok(Written::Nothing)
        }
        Write::Revoke(name) => {
            let removed = tx
                .query_opt(
                    "DELETE FROM sosq_users WHERE name = $1
                     RETURNING name, role, token_hash, created_at, groups",
                    &[&name],
                )
                .await
                .map_err(failure)?;
            match removed {
                Some(row) => Ok(Written::User(user_from(&row, 0)?)),
                None => Err(UserError::NotFound(name)),
            }
        }
        Write::SaveProfile(checked) => {
            let team = [checked.profile.team.clone()];
            match check_groups(&tx, &team).await? {
                Err(missing) => Err(missing),
                Ok(()) => profile_sql::save(&tx, checked).await?.map(Written::Profile),
            }
        }
        Write::RemoveProfile(name) => profile_sql::remove(&tx, name).await?.map(Written::Profile),
    };
    // A refused write changes nothing: the transaction rolls back when dropped.
    if outcome.is_ok() {
        tx.commit().await.map_err(failure)?;
    }
    Ok(outcome)
}

/// The first of `groups` that is not defined, if any (teams are never removed, so the
/// answer holds until the transaction commits).
async fn check_groups(
    tx: &impl GenericClient,
    groups: &[String],
) -> Result<Result<(), UserError>, String> {
    let found: Vec<String> = tx
        .query(
            "SELECT name FROM sosq_groups WHERE name = ANY($1)",
            &[&groups],
        )
        .await
        .map_err(failure)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(failure)?;
    let known = Roster {
        groups: found,
        ..Roster::default()
    };
    Ok(known.check_groups(groups))
}

/// Marks a team public or not; refused for a team that does not exist (`general` always
/// does; teams are never removed, so the check holds until the transaction commits).
async fn set_public(
    tx: &impl GenericClient,
    name: String,
    public: bool,
) -> Result<Result<(), UserError>, String> {
    let wanted = [name.clone()];
    if let Err(missing) = check_groups(tx, &wanted).await? {
        return Ok(Err(missing));
    }
    if public {
        tx.execute(
            "INSERT INTO sosq_public_groups (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )
        .await
        .map_err(failure)?;
    } else {
        tx.execute("DELETE FROM sosq_public_groups WHERE name = $1", &[&name])
            .await
            .map_err(failure)?;
    }
    Ok(Ok(()))
}

async fn add_user(tx: &impl GenericClient, user: User) -> Result<Result<(), UserError>, String> {
    if let Err(missing) = check_groups(tx, &user.groups).await? {
        return Ok(Err(missing));
    }
    let created_at = i64::try_from(user.created_at.0).unwrap_or(i64::MAX);
    let added = tx
        .execute(
            "INSERT INTO sosq_users (name, role, token_hash, created_at, groups)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
            &[
                &user.name,
                &user.role.as_str(),
                &user.token_hash,
                &created_at,
                &user.groups,
            ],
        )
        .await
        .map_err(failure)?;
    Ok(if added == 0 {
        Err(UserError::Exists(user.name))
    } else {
        Ok(())
    })
}

async fn set_groups(
    tx: &impl GenericClient,
    name: String,
    groups: Vec<String>,
) -> Result<Result<User, UserError>, String> {
    // The same order of checks as the file: groups, then the user, then its role.
    if let Err(missing) = check_groups(tx, &groups).await? {
        return Ok(Err(missing));
    }
    let changed = tx
        .query_opt(
            "UPDATE sosq_users SET groups = $2 WHERE name = $1 AND role = 'expert'
             RETURNING name, role, token_hash, created_at, groups",
            &[&name, &groups],
        )
        .await
        .map_err(failure)?;
    if let Some(row) = changed {
        return Ok(Ok(user_from(&row, 0)?));
    }
    let exists = tx
        .query_opt("SELECT 1 FROM sosq_users WHERE name = $1", &[&name])
        .await
        .map_err(failure)?
        .is_some();
    Ok(Err(if exists {
        UserError::AdminGroups(name)
    } else {
        UserError::NotFound(name)
    }))
}
