//! Named support profiles on both backends: saved, listed, replaced in place, removed,
//! their logos kept, replaced and dropped, seen by another directory (a running daemon) as
//! a revoke is, and bounded; then what each backend keeps on disk, and the migration of a
//! schema-2 database.

use sosq::protocol::Priority;

use super::*;

contract!(
    a_profile_is_saved_listed_replaced_in_place_and_removed,
    a_profile_needs_a_defined_team_and_a_refused_save_changes_nothing,
    a_logo_is_kept_replaced_and_removed_and_another_directory_serves_it,
    no_more_than_the_most_profiles_are_kept,
);

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR first";
const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, b's', b'e', b'c', b'o', b'n', b'd'];

fn draft(name: &str, team: &str) -> ProfileDraft {
    ProfileDraft {
        name: name.into(),
        team: team.into(),
        priorities: Vec::new(),
        welcome: String::new(),
        company: String::new(),
        logo: LogoChange::Keep,
    }
}

fn names(users: &UserDirectory) -> Vec<String> {
    users
        .profiles()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect()
}

fn a_profile_is_saved_listed_replaced_in_place_and_removed(place: &dyn Place) {
    let daemon = place.open();
    let admin = place.open();
    admin.add_group("billing").unwrap();
    assert!(admin.profiles().unwrap().is_empty());
    let before = Timestamp::now();
    let saved = admin
        .save_profile(ProfileDraft {
            priorities: vec![Priority::High, Priority::Normal],
            welcome: "Hello from ACME.\nWe answer within the hour.".into(),
            company: "ACME Ltd".into(),
            ..draft("acme", "billing")
        })
        .unwrap();
    assert_eq!(saved.team, "billing");
    assert_eq!(saved.priorities, [Priority::High, Priority::Normal]);
    assert_eq!(
        saved.welcome.as_deref(),
        Some("Hello from ACME.\nWe answer within the hour.")
    );
    assert_eq!(saved.company.as_deref(), Some("ACME Ltd"));
    assert_eq!(saved.logo, None);
    assert!(saved.saved_at >= before);
    admin.save_profile(draft("globex", "")).unwrap();
    assert_eq!(admin.profile("acme").unwrap(), Some(saved.clone()));
    assert_eq!(admin.profile("globex").unwrap().unwrap().team, "general");
    within(SEEN_WITHIN, "the daemon sees both profiles", || {
        names(&daemon) == ["acme", "globex"]
    });

    // Saving a name again replaces it where it was.
    let replaced = admin
        .save_profile(ProfileDraft {
            company: "ACME Group".into(),
            ..draft("acme", "general")
        })
        .unwrap();
    assert_eq!(replaced.team, "general");
    assert!(replaced.priorities.is_empty());
    assert_eq!(replaced.welcome, None);
    assert_eq!(names(&admin), ["acme", "globex"], "in place");
    within(SEEN_WITHIN, "the daemon sees the new words", || {
        daemon.profile("acme").unwrap() == Some(replaced.clone())
    });

    assert_eq!(admin.remove_profile("acme").unwrap(), replaced);
    assert!(matches!(
        admin.remove_profile("acme"),
        Err(UserError::NoSuchProfile(_))
    ));
    within(SEEN_WITHIN, "the daemon sees it removed", || {
        daemon.profile("acme").unwrap().is_none()
    });
    // Kept across opening again; users and teams are untouched by all of it.
    let again = place.open();
    assert_eq!(names(&again), ["globex"]);
    assert_eq!(again.groups().unwrap(), ["general", "billing"]);
    assert!(again.list().unwrap().is_empty());
}

fn a_profile_needs_a_defined_team_and_a_refused_save_changes_nothing(place: &dyn Place) {
    let users = place.open();
    let kept = users.save_profile(draft("acme", "")).unwrap();
    assert!(matches!(
        users.save_profile(draft("acme", "sales")),
        Err(UserError::NoSuchGroup(team)) if team == "sales"
    ));
    assert!(matches!(
        users.save_profile(ProfileDraft {
            logo: LogoChange::Set(b"<svg onload=alert(1)/>".to_vec()),
            ..draft("acme", "")
        }),
        Err(UserError::InvalidProfile(_))
    ));
    assert!(matches!(
        users.save_profile(draft("ACME", "")),
        Err(UserError::InvalidProfile(_))
    ));
    assert_eq!(place.open().profiles().unwrap(), [kept]);
}

fn a_logo_is_kept_replaced_and_removed_and_another_directory_serves_it(place: &dyn Place) {
    let daemon = place.open();
    let admin = place.open();
    let saved = admin
        .save_profile(ProfileDraft {
            logo: LogoChange::Set(PNG.to_vec()),
            ..draft("acme", "")
        })
        .unwrap();
    let info = saved.logo.expect("a logo");
    assert_eq!(info.kind, LogoKind::Png);
    assert_eq!(info.bytes, PNG.len() as u64);
    let png = Logo {
        kind: LogoKind::Png,
        bytes: PNG.to_vec(),
    };
    assert_eq!(admin.profile_logo("acme").unwrap(), Some(png.clone()));
    within(SEEN_WITHIN, "the daemon serves the logo", || {
        daemon.profile_logo("acme").unwrap() == Some(png.clone())
    });
    assert_eq!(daemon.profile_logo("globex").unwrap(), None, "no profile");

    // Saved again without a new image: the logo stays.
    let kept = admin
        .save_profile(ProfileDraft {
            company: "ACME".into(),
            ..draft("acme", "")
        })
        .unwrap();
    assert_eq!(kept.logo.as_ref(), Some(&info));
    within(SEEN_WITHIN, "the daemon sees the new words", || {
        daemon.profile("acme").unwrap().and_then(|p| p.company) == Some("ACME".into())
    });
    assert_eq!(daemon.profile_logo("acme").unwrap(), Some(png));

    let jpeg = Logo {
        kind: LogoKind::Jpeg,
        bytes: JPEG.to_vec(),
    };
    admin
        .save_profile(ProfileDraft {
            logo: LogoChange::Set(JPEG.to_vec()),
            ..draft("acme", "")
        })
        .unwrap();
    within(SEEN_WITHIN, "the daemon serves the new logo", || {
        daemon.profile_logo("acme").unwrap() == Some(jpeg.clone())
    });

    let removed = admin
        .save_profile(ProfileDraft {
            logo: LogoChange::Remove,
            ..draft("acme", "")
        })
        .unwrap();
    assert_eq!(removed.logo, None);
    within(SEEN_WITHIN, "the daemon has no logo any more", || {
        daemon.profile_logo("acme").unwrap().is_none()
    });
    // Two profiles may share one image; removing one leaves the other's.
    for name in ["one", "two"] {
        admin
            .save_profile(ProfileDraft {
                logo: LogoChange::Set(PNG.to_vec()),
                ..draft(name, "")
            })
            .unwrap();
    }
    admin.remove_profile("one").unwrap();
    assert_eq!(
        place.open().profile_logo("two").unwrap().map(|l| l.bytes),
        Some(PNG.to_vec())
    );
}

fn no_more_than_the_most_profiles_are_kept(place: &dyn Place) {
    let users = place.open();
    for n in 0..MAX_PROFILES {
        users.save_profile(draft(&format!("p{n}"), "")).unwrap();
    }
    assert!(matches!(
        users.save_profile(draft("one-more", "")),
        Err(UserError::TooManyProfiles)
    ));
    // Replacing one is no new one.
    users
        .save_profile(ProfileDraft {
            company: "changed".into(),
            ..draft("p0", "")
        })
        .unwrap();
    users.remove_profile("p1").unwrap();
    users.save_profile(draft("one-more", "")).unwrap();
    assert_eq!(place.open().profiles().unwrap().len(), MAX_PROFILES);
}

/// The file backend keeps each image in a file named by its hash beside `users.json`
/// (never in it), and removes the file once no profile names it; a logo file that is
/// not the image named is refused, not served.
#[test]
fn the_file_backend_keeps_logos_beside_the_users_file_and_sweeps_unused_ones() {
    let place = FilePlace::new();
    let users = place.open();
    let logo_files = || {
        let mut names: Vec<String> = std::fs::read_dir(place.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("profile-logo-"))
            .collect();
        names.sort();
        names
    };
    let saved = users
        .save_profile(ProfileDraft {
            logo: LogoChange::Set(PNG.to_vec()),
            ..draft("acme", "")
        })
        .unwrap();
    let hash = saved.logo.unwrap().sha256;
    assert_eq!(logo_files(), [format!("profile-logo-{hash}")]);
    let stored = place.stored();
    assert!(
        stored.contains(&hash) && !stored.contains("IHDR"),
        "{stored}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(place.0.path().join(format!("profile-logo-{hash}")))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    users
        .save_profile(ProfileDraft {
            logo: LogoChange::Set(JPEG.to_vec()),
            ..draft("acme", "")
        })
        .unwrap();
    assert_eq!(logo_files().len(), 1, "the old image is gone");
    let now = logo_files().remove(0);
    std::fs::write(place.0.path().join(&now), PNG).unwrap();
    assert!(matches!(
        users.profile_logo("acme"),
        Err(UserError::Corrupt { .. })
    ));
    users.remove_profile("acme").unwrap();
    assert!(logo_files().is_empty());

    // A hand-edited file naming a path instead of a hash reads nothing from elsewhere.
    let text = r#"{"users": [], "profiles": [{"name": "x", "team": "general",
        "saved_at": 1, "logo": {"kind": "png", "sha256": "../users.json", "bytes": 3}}]}"#;
    std::fs::write(place.0.path().join(USERS_FILE), text).unwrap();
    assert!(matches!(
        place.open().profile_logo("x"),
        Err(UserError::Corrupt { .. })
    ));
}

/// A database a sosqd of user schema 2 wrote (before profiles) migrates to schema 3 on
/// open, its teams and notice untouched; a profile's image is then kept in its row.
#[test]
fn a_schema_2_directory_migrates_to_profiles_and_keeps_its_rows() {
    let Some(place) = PgPlace::new() else {
        return;
    };
    let users = place.open();
    users.add_group("billing").unwrap();
    users.set_notice(Some("kept")).unwrap();
    drop(users);
    run_sql(
        &place.url,
        &format!(
            "DROP TABLE {0}.sosq_profiles; UPDATE {0}.sosq_users_meta SET version = 2",
            place.schema
        ),
    );
    let users = place.open();
    assert_eq!(users.groups().unwrap(), ["general", "billing"]);
    assert_eq!(users.notice().unwrap().unwrap().text, "kept");
    assert!(users.profiles().unwrap().is_empty());
    users
        .save_profile(ProfileDraft {
            logo: LogoChange::Set(PNG.to_vec()),
            ..draft("acme", "billing")
        })
        .unwrap();
    let kept = run_sql(
        &place.url,
        &format!(
            "SELECT name || ' ' || team || ' ' || logo_kind || ' ' || octet_length(logo)
             FROM {}.sosq_profiles",
            place.schema
        ),
    );
    assert_eq!(kept, [format!("acme billing png {}", PNG.len())]);
}
