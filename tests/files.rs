//! Bad files and bad disks: every file `chat` reads gives one clear error
//! and stays as it was, and a `/trust` that cannot write (read-only or full
//! home) says so and leaves `known_peers.toml` intact.

use crate::common;

use std::fs;
use std::process::{Command, Stdio};

use common::pty::Pty;
use common::{TestHome, Unchanged, fingerprint_of};

#[test]
fn a_bad_config_file_is_reported_and_kept() {
    for (text, needle) in [
        (
            "name = \"ada\"\ncolour = \"blue\"\n",
            "config.toml:2: unknown field `colour`",
        ),
        ("name = ", "config.toml:1:"),
        ("name = 5\n", "config.toml:1: invalid type"),
    ] {
        let home = TestHome::with_identity("initiator");
        fs::write(home.file("config.toml"), text).unwrap();
        let config = Unchanged::watch(home.file("config.toml"));
        let err = home
            .run(&["send", "127.0.0.1:1", "--accept-new"])
            .fails(1, &[needle])
            .to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        config.check();
    }
    let home = TestHome::with_identity("initiator");
    fs::write(home.file("config.toml"), "name = \"a\\u0007b\"\n").unwrap();
    home.run(&["send", "127.0.0.1:1"])
        .fails(1, &["invalid nickname"]);
}

#[test]
fn a_missing_or_unreadable_message_file_is_reported() {
    let home = TestHome::with_identity("initiator");
    home.run(&["send", "127.0.0.1:1", "--file", "/nonexistent/message.txt"])
        .fails(1, &["cannot open /nonexistent/message.txt", "No such file"]);
    home.run(&["send", "127.0.0.1:1", "--file", "/dev/null"])
        .fails(1, &["not a regular file or folder"]);
}

#[test]
fn a_missing_passphrase_file_is_reported() {
    let home = TestHome::empty();
    home.run(&[
        "init",
        "--bits",
        "2048",
        "--passphrase-file",
        "/nonexistent/pass",
    ])
    .fails(1, &["/nonexistent/pass"]);
    assert!(!home.file("identity.pem").exists());
}

/// Runs `chat --home HOME ARGS` on a pseudo-terminal inside a private mount
/// namespace prepared by `prepare` (a shell snippet where `$H` is the home),
/// then prints the SHA-256 of `known_peers.toml` as the namespace saw it.
fn in_namespace(home: &TestHome, prepare: &str, args: &[&str]) -> Pty {
    let script = format!(
        r#"H="$1"; shift; {prepare} || exit 99; "$@"; echo "chat exited $?"; echo "sha256 $(sha256sum "$H/known_peers.toml" | cut -c1-64)"; sleep 1"#
    );
    let mut command = Command::new("unshare");
    command
        .args(["-rm", "sh", "-c", &script, "sh"])
        .arg(home.path())
        .arg(env!("CARGO_BIN_EXE_chat"))
        .arg("--home")
        .arg(home.path())
        .args(args)
        .env_remove("CHAT_HOME")
        .env("TERM", "xterm-256color");
    Pty::spawn(command, 2000)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Waits until the cursor's row (the prompt) reads `row`.
#[track_caller]
fn wait_prompt(pty: &mut Pty, row: &str) {
    pty.wait_until(&format!("the prompt row {row:?}"), |pty| {
        (pty.cursor_row() == row.trim_end()).then_some(())
    });
}

/// `/trust` on a home that cannot take the write: an error, the prompt
/// stays unverified, and the old `known_peers.toml` is untouched.
fn trust_fails_cleanly(prepare: &str, expected_error: &str) {
    let bob = TestHome::with_identity("responder");
    let server = common::serve(&bob, &["--accept-new"], Stdio::null());
    let port = server.port();

    let ada = TestHome::with_identity("initiator");
    ada.run(&["peers", "add", "carol", &fingerprint_of("transient")])
        .ok();
    let before = fs::read(ada.file("known_peers.toml")).unwrap();
    let mut repl = in_namespace(
        &ada,
        prepare,
        &["connect", &format!("127.0.0.1:{port}"), "--name", "ada"],
    );
    // An unknown key: asked before we reveal ourselves.
    repl.wait_for("continue? (yes/no/paste fingerprint)");
    repl.line("yes");
    repl.wait_for("NOT VERIFIED");
    wait_prompt(&mut repl, "bob (unverified)> ");
    repl.line("/trust");
    repl.wait_for(expected_error);
    wait_prompt(&mut repl, "bob (unverified)> ");
    repl.line("/quit");
    let seen = repl.wait_until("the hash of known_peers.toml", |pty| {
        pty.history().iter().find_map(|row| {
            let hex = row.strip_prefix("sha256 ")?;
            (hex.len() == 64).then(|| hex.to_string())
        })
    });
    assert_eq!(
        seen,
        sha256_hex(&before),
        "known_peers.toml changed inside the namespace"
    );
    assert_eq!(fs::read(ada.file("known_peers.toml")).unwrap(), before);
    drop(server);
}

#[test]
fn trust_on_a_read_only_home_reports_and_keeps_the_file() {
    trust_fails_cleanly(
        r#"mount --bind "$H" "$H" && mount -o remount,bind,ro "$H""#,
        "Read-only file system",
    );
}

#[test]
fn trust_on_a_full_home_reports_and_keeps_the_file() {
    // A small tmpfs over the home, holding a copy of its files and then
    // filled to the last byte.
    trust_fails_cleanly(
        r#"T=$(mktemp -d) && cp -a "$H/." "$T/" && mount -t tmpfs -o size=256k tmpfs "$H" && cp -a "$T/." "$H/" && (dd if=/dev/zero of="$H/filler" bs=4096 2>/dev/null; true)"#,
        "No space left on device",
    );
}
