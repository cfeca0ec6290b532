//! Starting, restarting and stopping the server on a data dir.

mod common;

use std::fs;
use std::time::Duration;

use common::Server;

fn credentials(dir: &std::path::Path) -> String {
    fs::read_to_string(dir.join("credentials")).unwrap()
}

#[test]
fn root_keys_are_generated_once_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start_in(dir.path(), &[], &[]).unwrap();
    let written = credentials(dir.path());
    assert!(
        written.starts_with("[nimbus]\naws_access_key_id = AKIA"),
        "{written}"
    );
    assert!(written.contains("aws_secret_access_key = "));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("credentials"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "credentials must be private, mode {mode:o}"
        );
    }
    drop(first);

    fs::remove_file(dir.path().join("credentials")).unwrap();
    let _second = Server::start_in(
        dir.path(),
        &[],
        &[
            ("NIMBUS_ROOT_ACCESS_KEY_ID", "AKIAOTHEROTHEROTHER0"),
            ("NIMBUS_ROOT_SECRET_ACCESS_KEY", "s"),
        ],
    )
    .unwrap();
    assert_eq!(
        credentials(dir.path()),
        written,
        "restart must keep the first root keys"
    );
}

#[test]
fn root_keys_come_from_the_environment_on_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let _server = Server::start_in(
        dir.path(),
        &[],
        &[
            ("NIMBUS_ROOT_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            (
                "NIMBUS_ROOT_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        credentials(dir.path()),
        "[nimbus]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    );
}

#[test]
fn a_second_server_cannot_share_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Server::start_in(dir.path(), &[], &[]).unwrap();
    let err = Server::start_in(dir.path(), &[], &[])
        .err()
        .expect("second server refused");
    assert!(
        err.contains("another nimbus server is using the data dir"),
        "{err}"
    );
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let err = Server::start_in(dir.path(), &["--account-id", "12345"], &[])
        .err()
        .unwrap();
    assert!(err.contains("invalid --account-id"), "{err}");
    let err = Server::start_in(dir.path(), &["--region", "US East"], &[])
        .err()
        .unwrap();
    assert!(err.contains("invalid --region"), "{err}");
}

#[test]
fn a_data_dir_stays_with_its_account() {
    let dir = tempfile::tempdir().unwrap();
    drop(Server::start_in(dir.path(), &[], &[]).unwrap());
    let err = Server::start_in(dir.path(), &["--account-id", "111111111111"], &[])
        .err()
        .unwrap();
    assert!(err.contains("belongs to account 000000000000"), "{err}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start();
    assert_eq!(
        server
            .request("GET /_nimbus/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .status,
        200
    );
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}
