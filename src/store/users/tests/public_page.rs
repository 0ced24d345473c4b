//! The public status page's part of the directory, on both backends: the maintenance
//! notice and the public teams, seen by another directory (a running daemon) as a revoke
//! is; then old `users.json` files and schema-1 databases, which must load as they are.

use super::*;

contract!(
    a_notice_is_set_replaced_and_cleared_and_another_directory_sees_each,
    a_refused_notice_leaves_the_one_in_force,
    teams_are_marked_public_general_too_and_another_directory_sees_it,
);

fn a_notice_is_set_replaced_and_cleared_and_another_directory_sees_each(place: &dyn Place) {
    let daemon = place.open();
    let admin = place.open();
    assert_eq!(daemon.notice().unwrap(), None);
    let before = Timestamp::now();
    let set = admin
        .set_notice(Some("  Maintenance tonight 22:00-23:00 UTC  "))
        .unwrap()
        .expect("the notice in force");
    assert_eq!(set.text, "Maintenance tonight 22:00-23:00 UTC");
    assert!(set.set_at >= before, "stamped when set");
    assert_eq!(
        admin.notice().unwrap(),
        Some(set.clone()),
        "reads its own write"
    );
    within(SEEN_WITHIN, "the daemon sees the notice", || {
        daemon.notice().unwrap() == Some(set.clone())
    });
    let replaced = admin.set_notice(Some("Back to normal")).unwrap();
    within(SEEN_WITHIN, "the daemon sees the new notice", || {
        daemon.notice().unwrap() == replaced
    });
    assert_eq!(admin.set_notice(None).unwrap(), None);
    within(SEEN_WITHIN, "the daemon sees it cleared", || {
        daemon.notice().unwrap().is_none()
    });
    // Clearing what is not set is no error; users are untouched by all of it.
    assert_eq!(admin.set_notice(None).unwrap(), None);
    admin.add("ana", StaffRole::Expert).unwrap();
    admin.set_notice(Some("again")).unwrap();
    assert_eq!(place.open().list().unwrap().len(), 1);
}

fn a_refused_notice_leaves_the_one_in_force(place: &dyn Place) {
    let users = place.open();
    let kept = users.set_notice(Some("kept")).unwrap();
    let long = "x".repeat(MAX_NOTICE_CHARS + 1);
    for bad in ["", "   ", "two\nlines", long.as_str()] {
        let refused = users.set_notice(Some(bad));
        assert!(
            matches!(refused, Err(UserError::InvalidNotice(_))),
            "{bad:?}: {refused:?}"
        );
    }
    assert_eq!(place.open().notice().unwrap(), kept);
}

fn teams_are_marked_public_general_too_and_another_directory_sees_it(place: &dyn Place) {
    let daemon = place.open();
    let admin = place.open();
    assert!(daemon.public_groups().unwrap().is_empty());
    admin.add_group("network").unwrap();
    admin.add_group_public("billing", true).unwrap();
    admin.set_group_public("general", true).unwrap();
    // Listed as `groups` lists them: general first, then in the order added.
    let expected = vec!["general".to_string(), "billing".to_string()];
    within(SEEN_WITHIN, "the daemon sees the public teams", || {
        daemon.public_groups().unwrap() == expected
    });
    // Marking twice is no error and lists it once.
    admin.set_group_public("billing", true).unwrap();
    assert_eq!(admin.public_groups().unwrap(), expected);
    admin.set_group_public("general", false).unwrap();
    within(SEEN_WITHIN, "the daemon sees general private again", || {
        daemon.public_groups().unwrap() == ["billing"]
    });
    // Only teams that exist; a refused add marks nothing.
    assert!(matches!(
        admin.set_group_public("sales", true),
        Err(UserError::NoSuchGroup(_))
    ));
    assert!(matches!(
        admin.add_group_public("network", true),
        Err(UserError::GroupExists(_))
    ));
    assert_eq!(admin.public_groups().unwrap(), ["billing"]);
    assert_eq!(
        admin.groups().unwrap(),
        ["general", "network", "billing"],
        "marking changes no team"
    );
}

/// A `users.json` from before the status page (no `public_groups`, no `notice`) loads as
/// it is: its users and teams, nothing public, no notice; and a file that uses neither is
/// written without them, so it stays readable the same way.
#[test]
fn an_old_users_file_loads_and_a_new_one_without_public_parts_looks_the_same() {
    let place = FilePlace::new();
    let token_hash = hash_secret("sosq_old");
    let old = format!(
        r#"{{"users": [{{"name": "ana", "role": "expert", "token_hash": "{token_hash}",
            "created_at": 1700000000000, "groups": ["billing"]}}],
          "groups": ["billing"]}}"#
    );
    std::fs::write(place.0.path().join(USERS_FILE), old).unwrap();
    let users = place.open();
    assert_eq!(users.authenticate("sosq_old").unwrap().unwrap().name, "ana");
    assert_eq!(users.groups().unwrap(), ["general", "billing"]);
    assert!(users.public_groups().unwrap().is_empty());
    assert_eq!(users.notice().unwrap(), None);

    users.add_group("network").unwrap();
    let stored = place.stored();
    assert!(!stored.contains("public_groups"), "{stored}");
    assert!(!stored.contains("notice"), "{stored}");
    users.set_group_public("network", true).unwrap();
    users.set_notice(Some("hello")).unwrap();
    let stored = place.stored();
    assert!(stored.contains("public_groups"), "{stored}");
    assert!(stored.contains("\"notice\""), "{stored}");
    assert_eq!(
        place
            .open()
            .authenticate("sosq_old")
            .unwrap()
            .unwrap()
            .groups,
        ["billing"]
    );
}

/// A database a sosqd of user schema 1 wrote (before the status page) migrates to the
/// current schema on open, its users and teams untouched.
#[test]
fn a_schema_1_directory_migrates_and_keeps_its_rows() {
    let Some(place) = PgPlace::new() else {
        return;
    };
    let users = place.open();
    let token = users
        .add_in_groups("ana", StaffRole::Expert, &[])
        .expect("add ana");
    users.add_group("billing").unwrap();
    drop(users);
    // Back to exactly what schema 1 made: its two tables and their rows.
    run_sql(
        &place.url,
        &format!(
            "DROP TABLE {0}.sosq_public_groups; DROP TABLE {0}.sosq_notice;
             DROP TABLE {0}.sosq_profiles; UPDATE {0}.sosq_users_meta SET version = 1",
            place.schema
        ),
    );
    let users = place.open();
    assert_eq!(users.authenticate(&token).unwrap().unwrap().name, "ana");
    assert_eq!(users.groups().unwrap(), ["general", "billing"]);
    assert!(users.public_groups().unwrap().is_empty());
    assert_eq!(users.notice().unwrap(), None);
    users.set_group_public("billing", true).unwrap();
    users.set_notice(Some("migrated")).unwrap();
    assert_eq!(users.public_groups().unwrap(), ["billing"]);
    let version = run_sql(
        &place.url,
        &format!("SELECT version FROM {}.sosq_users_meta", place.schema),
    );
    assert_eq!(version, [super::super::sql::SCHEMA_VERSION.to_string()]);
}
