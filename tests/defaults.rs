//! Defaults that fit a person: the nickname defaults to the account name at
//! `init`; `chat fingerprint` reads identity.pub without the passphrase,
//! and identity.pub is checked against the key whenever the key is loaded.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::{Outcome, TestHome};

fn init(home: &TestHome, args: &[&str], user: Option<&str>) -> Outcome {
    let mut command = home.chat();
    command.args(["init", "--bits", "2048"]).args(args);
    match user {
        Some(user) => command.env("USER", user).env("LOGNAME", user),
        None => command.env_remove("USER").env_remove("LOGNAME"),
    };
    Outcome::of(command.stdin(Stdio::null()).output().unwrap())
}

#[test]
fn fingerprint_needs_no_passphrase() {
    let home = TestHome::empty();
    let passphrase = home.file("passphrase");
    fs::write(&passphrase, "correct horse\n").unwrap();
    fs::set_permissions(&passphrase, fs::Permissions::from_mode(0o600)).unwrap();
    let created = init(
        &home,
        &["--passphrase-file", passphrase.to_str().unwrap()],
        Some("ada"),
    );
    let fingerprint = created.ok().trim().to_string();
    let key = fs::read_to_string(home.file("identity.pem")).unwrap();
    assert!(
        key.contains("ENCRYPTED PRIVATE KEY"),
        "the key is protected"
    );
    let public = fs::read_to_string(home.file("identity.pub")).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    // No passphrase given, no terminal to ask on: identity.pub answers.
    let shown = home.run(&["fingerprint"]);
    assert_eq!(shown.ok().trim(), fingerprint);
    let pem = home.run(&["fingerprint", "--pem"]);
    assert_eq!(pem.ok(), public);
    // Without identity.pub, the passphrase is needed again.
    fs::remove_file(home.file("identity.pub")).unwrap();
    home.run(&["fingerprint"])
        .fails(1, &["protected by a passphrase"]);
}

#[test]
fn identity_pub_is_checked_whenever_the_key_is_loaded() {
    let home = TestHome::with_identity("initiator");
    // A home from before identity.pub: loading the key writes it.
    let fingerprint = home.run(&["fingerprint"]).ok().trim().to_string();
    assert_eq!(fingerprint, common::fingerprint_of("initiator"));
    let written = fs::read_to_string(home.file("identity.pub")).unwrap();
    let other = TestHome::with_identity("responder");
    let wrong = other.run(&["fingerprint", "--pem"]).ok().to_string();
    assert_ne!(written, wrong);
    fs::write(home.file("identity.pub"), &wrong).unwrap();
    home.run(&["fingerprint"]).fails(
        1,
        &["identity.pub does not match", "identity.pem", &fingerprint],
    );
    home.run(&["send", "127.0.0.1:9", "--accept-new"])
        .fails(1, &["identity.pub does not match"]);
}

#[test]
fn the_nickname_defaults_to_the_account_name() {
    let home = TestHome::empty();
    let created = init(&home, &[], Some("zed"));
    created.ok();
    assert!(
        created
            .stderr
            .contains("Your nickname, announced to peers, is \"zed\";"),
        "{}",
        created.stderr
    );
    assert!(
        !home.file("config.toml").exists(),
        "the default is not written down"
    );

    // Without USER and LOGNAME, the password database names the account.
    let account = Command::new("id").arg("-un").output().unwrap();
    let account = String::from_utf8(account.stdout)
        .unwrap()
        .trim()
        .to_string();
    let home = TestHome::empty();
    let created = init(&home, &[], None);
    assert!(
        created.stderr.contains(&format!(
            "Your nickname, announced to peers, is {account:?};"
        )),
        "{}",
        created.stderr
    );

    // Changed at init: saved in config.toml, and announced from then on.
    let home = TestHome::empty();
    let created = init(&home, &["--name", "Ada L."], Some("zed"));
    created.ok();
    assert!(
        created
            .stderr
            .contains("is \"Ada L.\" (saved in config.toml)")
    );
    let config = fs::read_to_string(home.file("config.toml")).unwrap();
    assert!(config.contains("name = \"Ada L.\""), "{config}");
    let home = TestHome::empty();
    init(&home, &["--name", "bell\u{7}"], Some("zed")).fails(1, &["invalid nickname"]);
    assert!(!home.file("identity.pem").exists(), "nothing was created");
}
