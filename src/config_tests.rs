//! Unit tests of `config.rs`: the shipped file, precedence, validation, serialization.

use super::*;

#[test]
fn shipped_config_file_matches_the_defaults() {
    let shipped = include_str!("../config/sosqd.toml");
    let parsed = Config::from_toml(shipped).expect("config/sosqd.toml parses");
    let defaults = Config::default();
    assert_eq!(format!("{parsed:?}"), format!("{defaults:?}"));
}

#[test]
fn file_then_flags_take_precedence() {
    let mut file = Config::from_toml("case_ttl = \"2h\"\nlisten = \"127.0.0.1:9000\"").unwrap();
    assert_eq!(file.case_ttl, Duration::from_secs(7200));
    file.listen = "127.0.0.1:1".parse().unwrap();
    assert_eq!(file.max_open_cases, Config::default().max_open_cases);
}

#[test]
fn unknown_options_and_bad_values_are_clear_errors() {
    let err = Config::from_toml("case_tll = \"2h\"").unwrap_err();
    assert!(err.contains("case_tll"), "{err}");
    let err = Config::from_toml("case_ttl = \"soon\"").unwrap_err();
    assert!(err.contains("soon"), "{err}");
    // One line, saying where: a journal keeps it as one entry.
    let err = Config::from_toml("case_ttl = \"2h\"\nmax_connections = = 1\n").unwrap_err();
    assert!(!err.contains('\n'), "{err}");
    assert!(err.starts_with("line 2, column "), "{err}");
    let zero = Config {
        case_ttl: Duration::ZERO,
        ..Config::default()
    };
    assert!(zero.validate().is_err());
}

#[test]
fn wrong_code_budgets_must_allow_a_failure_and_earn_it_back() {
    let no_burst = Config {
        wrong_codes_per_connection_burst: 0,
        ..Config::default()
    };
    let err = no_burst.validate().unwrap_err().to_string();
    assert!(err.contains("wrong_codes_per_connection_burst"), "{err}");
    let no_refill = Config {
        wrong_codes_per_address_per_minute: 0,
        ..Config::default()
    };
    assert!(no_refill.validate().is_err());
    let limits = crate::server::ThrottleLimits::from_config(&Config::default());
    assert_eq!(
        (
            limits.per_connection.burst,
            limits.per_connection.per_minute
        ),
        (5, 2)
    );
    assert_eq!(
        (limits.per_address.burst, limits.per_address.per_minute),
        (30, 10)
    );
    assert_eq!((limits.total.burst, limits.total.per_minute), (50, 20));
}

#[test]
fn relay_limits_and_windows_are_checked() {
    let narrow = Config {
        receive_window: 1024,
        stream_receive_window: 4096,
        ..Config::default()
    };
    assert!(
        narrow.validate().is_err(),
        "a stream window past the connection's"
    );
    let no_streams = Config {
        max_streams_per_session: 0,
        ..Config::default()
    };
    assert!(no_streams.validate().is_err());
    // A session needs the control stream, its forwards and chats, and one spare.
    let cramped = Config {
        max_streams_per_connection: 19,
        ..Config::default()
    };
    assert!(cramped.validate().is_err(), "16 forwards + 2 chats + 2");
    let roomy = Config {
        max_streams_per_connection: 20,
        ..Config::default()
    };
    assert!(roomy.validate().is_ok());
    // 4 MiB + 4 MiB + (16 forwards + 2 chats) x 2 x 64 KiB, as config/sosqd.toml
    // documents.
    assert_eq!(
        crate::relay::memory_bound_per_connection(&Config::default()),
        10 * 1024 * 1024 + 256 * 1024
    );
}

#[test]
fn the_log_level_takes_levels_and_filters_and_refuses_nonsense() {
    for good in ["info", "debug", "warn,sosqd=trace"] {
        let config = Config::from_toml(&format!("log_level = {good:?}")).unwrap();
        assert!(config.validate().is_ok(), "{good}");
    }
    let bad = Config::from_toml("log_level = \"loud=please=now\"").unwrap();
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("log_level"), "{err}");
}

#[test]
fn options_serialize_under_their_file_names_and_read_back() {
    let config = Config::from_toml("case_ttl = \"2h\"\nmax_connections = 7").unwrap();
    let value = serde_json::to_value(&config).unwrap();
    assert_eq!(value["case_ttl"], "2h");
    assert_eq!(value["max_connections"], 7);
    assert_eq!(value["log_level"], "info");
    let back = Config::from_toml(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(format!("{back:?}"), format!("{config:?}"));
}

#[test]
fn the_relay_idle_timeout_is_off_unless_set() {
    let defaults = Config::default();
    assert!(defaults.validate().is_ok());
    assert_eq!(
        crate::relay::RelayLimits::from_config(&defaults).idle_timeout,
        None
    );
    let never = Config::from_toml("relay_idle_timeout = \"0s\"").unwrap();
    assert!(never.validate().is_ok());
    assert_eq!(
        crate::relay::RelayLimits::from_config(&never).idle_timeout,
        None
    );
    let set = Config::from_toml("relay_idle_timeout = \"15m\"").unwrap();
    assert_eq!(
        crate::relay::RelayLimits::from_config(&set).idle_timeout,
        Some(Duration::from_secs(15 * 60))
    );
}

#[test]
fn relative_paths_in_a_config_file_are_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let file = etc.join("sosqd.toml");
    std::fs::write(
        &file,
        "data_dir = \"state\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"/abs/key.pem\"\n",
    )
    .unwrap();
    let config = Config::load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(config.data_dir, etc.join("state"));
    assert_eq!(config.tls_cert, Some(etc.join("tls/cert.pem")));
    assert_eq!(config.tls_key, Some(PathBuf::from("/abs/key.pem")));
    // --data-dir stays relative to the current directory.
    let flag = Overrides {
        data_dir: Some(PathBuf::from("mine")),
        ..Overrides::default()
    };
    let config = Config::load(Some(&file), &flag).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("mine"));
    // A file that does not set data_dir keeps the default, relative to the cwd too.
    std::fs::write(&file, "case_ttl = \"2h\"\n").unwrap();
    let config = Config::load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("sosqd-data"));
}

#[test]
fn a_cluster_node_fails_over_faster_unless_its_file_says_otherwise() {
    let cluster = Overrides {
        store: Some("postgres://sosq@db/sosq".into()),
        ..Overrides::default()
    };
    let node = Config::load(None, &cluster).unwrap();
    assert_eq!(node.keep_alive, CLUSTER_KEEP_ALIVE);
    assert_eq!(node.idle_timeout, CLUSTER_IDLE_TIMEOUT);
    let single = Config::load(None, &Overrides::default()).unwrap();
    assert_eq!(single.idle_timeout, Duration::from_secs(6));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sosqd.toml");
    std::fs::write(&file, "idle_timeout = \"8s\"\n").unwrap();
    let node = Config::load(Some(&file), &cluster).unwrap();
    assert_eq!(node.idle_timeout, Duration::from_secs(8), "the file wins");
    assert_eq!(node.keep_alive, CLUSTER_KEEP_ALIVE);
    let bad = Overrides {
        store: Some("mysql://db".into()),
        ..Overrides::default()
    };
    let refused = Config::load(None, &bad).unwrap_err().to_string();
    assert!(refused.contains("PostgreSQL URL"), "{refused}");
}
