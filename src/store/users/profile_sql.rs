//! The PostgreSQL statements of the support profiles (`sosq_profiles`, user schema 3).
//!
//! A reload reads every profile's words at each refresh, but a logo only when its hash is
//! not in the copy being replaced: the image travels once per change, not four times a
//! second. Saves take the schema's version row first, so two saves at once cannot both
//! pass the [`MAX_PROFILES`] count.

use std::collections::HashMap;
use std::sync::Arc;

use sosq::protocol::{Priority, Timestamp};
use tokio_postgres::{GenericClient, Row};

use super::profiles::{sha256_hex, Checked, CheckedLogo};
use super::sql::failure;
use super::{LogoInfo, LogoKind, Profile, UserError, MAX_PROFILES};

/// The columns a profile is read from, in [`profile_from`]'s order (the image last).
const COLUMNS: &str = "name, team, priorities, welcome, company, saved_at, logo_kind, \
                       logo_sha256, octet_length(logo)";

/// Logos by SHA-256, as the in-memory copy keeps them.
pub(super) type Logos = HashMap<String, Arc<Vec<u8>>>;

/// Every profile in the order first saved, and the logos they name: those in `known`
/// taken from there, the others fetched.
pub(super) async fn profiles(
    client: &impl GenericClient,
    known: &Logos,
) -> Result<(Vec<Profile>, Logos), String> {
    let hashes: Vec<&str> = known.keys().map(String::as_str).collect();
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS},
                     CASE WHEN logo_sha256 = ANY($1) THEN NULL ELSE logo END
                 FROM sosq_profiles ORDER BY seq"
            ),
            &[&hashes],
        )
        .await
        .map_err(failure)?;
    let mut profiles = Vec::with_capacity(rows.len());
    let mut logos = Logos::new();
    for row in &rows {
        let profile = profile_from(row)?;
        if let Some(info) = &profile.logo {
            let image = match known.get(&info.sha256) {
                Some(image) => image.clone(),
                None => {
                    let bytes: Option<Vec<u8>> = row.try_get(9).map_err(failure)?;
                    let bytes = bytes.unwrap_or_default();
                    // Served to browsers as the type it names: only the image it says.
                    if sha256_hex(&bytes) != info.sha256 {
                        return Err(format!(
                            "the logo of support profile {:?} does not match its hash",
                            profile.name
                        ));
                    }
                    Arc::new(bytes)
                }
            };
            logos.insert(info.sha256.clone(), image);
        }
        profiles.push(profile);
    }
    Ok((profiles, logos))
}

/// A profile from the [`COLUMNS`]. Priorities this build does not know are left out
/// rather than failing the whole directory (which would refuse every staff token).
fn profile_from(row: &Row) -> Result<Profile, String> {
    let name: String = row.try_get(0).map_err(failure)?;
    let priorities: Vec<String> = row.try_get(2).map_err(failure)?;
    let saved_at: i64 = row.try_get(5).map_err(failure)?;
    let kind: Option<&str> = row.try_get(6).map_err(failure)?;
    let sha256: Option<String> = row.try_get(7).map_err(failure)?;
    let size: Option<i32> = row.try_get(8).map_err(failure)?;
    let logo = match (kind, sha256, size) {
        (Some(kind), Some(sha256), Some(size)) => Some(LogoInfo {
            kind: LogoKind::from_stored(kind)
                .ok_or_else(|| format!("support profile {name:?} has a logo of type {kind:?}"))?,
            sha256,
            bytes: u64::try_from(size).unwrap_or(0),
        }),
        _ => None,
    };
    Ok(Profile {
        team: row.try_get(1).map_err(failure)?,
        priorities: priorities
            .iter()
            .filter_map(|p| p.parse::<Priority>().ok())
            .collect(),
        welcome: row.try_get(3).map_err(failure)?,
        company: row.try_get(4).map_err(failure)?,
        saved_at: Timestamp(u64::try_from(saved_at).unwrap_or(0)),
        logo,
        name,
    })
}

/// Saves a checked profile whose team the caller found (in the same transaction); see
/// [`super::UserDirectory::save_profile`].
pub(super) async fn save(
    tx: &impl GenericClient,
    checked: Checked,
) -> Result<Result<Profile, UserError>, String> {
    // One save at a time, so the count below holds until this one commits.
    tx.execute(
        "SELECT version FROM sosq_users_meta WHERE id = 1 FOR UPDATE",
        &[],
    )
    .await
    .map_err(failure)?;
    let profile = checked.profile;
    let others: i64 = tx
        .query_one(
            "SELECT count(*) FROM sosq_profiles WHERE name <> $1",
            &[&profile.name],
        )
        .await
        .map_err(failure)?
        .try_get(0)
        .map_err(failure)?;
    if others >= MAX_PROFILES as i64 {
        return Ok(Err(UserError::TooManyProfiles));
    }
    let (replace_logo, kind, sha256, image) = match checked.logo {
        CheckedLogo::Keep => (false, None, None, None),
        CheckedLogo::Remove => (true, None, None, None),
        CheckedLogo::Set(info, bytes) => (
            true,
            Some(info.kind.as_str()),
            Some(info.sha256),
            Some(bytes),
        ),
    };
    let priorities: Vec<&str> = profile.priorities.iter().map(|p| p.as_str()).collect();
    let saved_at = i64::try_from(profile.saved_at.0).unwrap_or(i64::MAX);
    // A new row takes the logo given (none for Keep); an existing one keeps its own
    // unless the save replaces it ($10).
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO sosq_profiles
                     (name, team, priorities, welcome, company, saved_at, logo_kind,
                      logo_sha256, logo)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (name) DO UPDATE SET
                     team = excluded.team,
                     priorities = excluded.priorities,
                     welcome = excluded.welcome,
                     company = excluded.company,
                     saved_at = excluded.saved_at,
                     logo_kind = CASE WHEN $10 THEN excluded.logo_kind
                         ELSE sosq_profiles.logo_kind END,
                     logo_sha256 = CASE WHEN $10 THEN excluded.logo_sha256
                         ELSE sosq_profiles.logo_sha256 END,
                     logo = CASE WHEN $10 THEN excluded.logo ELSE sosq_profiles.logo END
                 RETURNING {COLUMNS}"
            ),
            &[
                &profile.name,
                &profile.team,
                &priorities,
                &profile.welcome,
                &profile.company,
                &saved_at,
                &kind,
                &sha256,
                &image,
                &replace_logo,
            ],
        )
        .await
        .map_err(failure)?;
    Ok(Ok(profile_from(&row)?))
}

/// Removes a profile, returning it.
pub(super) async fn remove(
    tx: &impl GenericClient,
    name: String,
) -> Result<Result<Profile, UserError>, String> {
    let removed = tx
        .query_opt(
            &format!("DELETE FROM sosq_profiles WHERE name = $1 RETURNING {COLUMNS}"),
            &[&name],
        )
        .await
        .map_err(failure)?;
    Ok(match removed {
        Some(row) => Ok(profile_from(&row)?),
        None => Err(UserError::NoSuchProfile(name)),
    })
}
