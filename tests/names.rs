//! Names as addresses (docs/FILES.md, "Names as addresses"): `chat send
//! bob` dials the address pinned for bob, or the one a `[hosts.bob]` table
//! in config.toml gives, with its fingerprint and nickname.

use crate::common;

use std::fs;
use std::process::Stdio;

use common::{TestHome, fingerprint_of, secs, serve};

/// A pinned peer's name reaches the address recorded when it was pinned.
#[test]
fn a_pinned_name_is_an_address() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let port = {
        let server = serve(&bob, &["--accept-new"], Stdio::null());
        let port = server.port();
        ada.run(&["send", &format!("127.0.0.1:{port}"), "--accept-new"])
            .ok();
        server.finish(secs(20)).ok();
        port
    };
    let pinned = fs::read_to_string(ada.file("known_peers.toml")).unwrap();
    assert!(
        pinned.contains(&format!("127.0.0.1:{port}")),
        "the address is recorded: {pinned}"
    );
    // Serve again on the same port, and send by name, with no trust flag:
    // only a pinned key would do.
    let server = common::Running::spawn({
        let mut command = bob.chat();
        command
            .args(["serve", "--once", "--accept-new", "--name", "bob"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null());
        command
    });
    server.port();
    let sent = ada.run_with_input(&["send", "bob"], b"by name\n");
    sent.ok();
    assert!(sent.stderr.contains("Delivered to bob."), "{}", sent.stderr);
    assert_eq!(server.finish(secs(20)).stdout, "by name\n");
}

/// A pinned peer with no recorded address: a clear error, nothing dialled.
#[test]
fn a_pinned_name_without_an_address_says_what_to_do() {
    let ada = TestHome::with_identity("initiator");
    ada.run(&["peers", "add", "carol", &fingerprint_of("responder")])
        .ok();
    ada.run(&["send", "carol"]).fails(
        1,
        &[
            "\"carol\" is a pinned peer",
            "no address is recorded",
            "carol:7777",
        ],
    );
}

/// `[hosts.NAME]` gives the address, the expected key (as `--expect`, which
/// pins it) and the nickname to announce; a flag on the command line wins.
#[test]
fn a_hosts_table_is_like_an_ssh_host_block() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = serve(&bob, &["--accept-new", "--json"], Stdio::null());
    let port = server.port();
    fs::write(
        ada.file("config.toml"),
        format!(
            "[hosts.b]\naddress = \"127.0.0.1:{port}\"\nfingerprint = \"{}\"\nname = \"ada at work\"\n",
            fingerprint_of("responder")
        ),
    )
    .unwrap();
    let sent = ada.run_with_input(&["send", "b"], b"through the table\n");
    sent.ok();
    let received = server.finish(secs(20));
    assert!(
        received.stdout.contains("\"nickname\":\"ada at work\""),
        "the table's nickname is announced: {}",
        received.stdout
    );
    assert!(received.stdout.contains("through the table"));

    // The wrong key in the table is refused, like --expect.
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let port = server.port();
    fs::write(
        ada.file("config.toml"),
        format!(
            "[hosts.b]\naddress = \"127.0.0.1:{port}\"\nfingerprint = \"{}\"\n",
            fingerprint_of("initiator")
        ),
    )
    .unwrap();
    let refused = ada.run(&["send", "b"]);
    assert_eq!(refused.code, Some(4), "{refused:#?}");
    // --accept-new on the command line replaces the table's fingerprint;
    // the key is pinned already (under its nickname), so it is accepted.
    ada.run(&["send", "b", "--accept-new"]).ok();
    server.finish(secs(20));
}
