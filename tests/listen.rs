//! `chat serve --listen` (`-l`): PORT, :PORT, HOST:PORT and [V6]:PORT; by
//! default one socket for IPv6 and IPv4; the start-up lines list every
//! address a peer can use, loopback last.

use crate::common;

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Instant;

use common::{Running, TestHome, secs};

/// Whether this machine can bind `::1`; if not, says why the IPv6 part of
/// a test is skipped.
fn have_ipv6_loopback() -> bool {
    match TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            println!("skipping the IPv6 part: cannot bind [::1]: {e}");
            false
        }
    }
}

fn serve_on(bob: &TestHome, listen: &[&str], once: bool) -> Running {
    let mut command = bob.chat();
    command
        .args(["serve", "--accept-new", "--name", "bob"])
        .args(listen)
        .args(if once { &["--once"][..] } else { &[] })
        .stdin(Stdio::null());
    Running::spawn(command)
}

fn send(ada: &TestHome, address: &str, text: &str) {
    let sent = ada.run_with_input(&["send", address, "--accept-new"], text.as_bytes());
    sent.ok();
}

#[test]
fn every_listen_form_is_served() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let mut forms = vec![
        (vec!["--listen", "0"], "127.0.0.1"),
        (vec!["-l", ":0"], "127.0.0.1"),
        (vec!["--listen", "127.0.0.1:0"], "127.0.0.1"),
        (vec!["-l", "localhost:0"], "localhost"),
    ];
    if have_ipv6_loopback() {
        forms.push((vec!["--listen", "[::1]:0"], "[::1]"));
        forms.push((vec!["--listen", "[::]:0"], "[::1]"));
    }
    for (listen, host) in forms {
        let server = serve_on(&bob, &listen, true);
        let port = server.port();
        let text = format!("via {listen:?}\n");
        send(&ada, &format!("{host}:{port}"), &text);
        let received = server.finish(secs(20));
        assert_eq!(received.stdout, text, "{listen:?}: {received:#?}");
    }
}

#[test]
fn the_default_takes_ipv6_and_ipv4_and_lists_loopback_last() {
    if !have_ipv6_loopback() {
        return;
    }
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = serve_on(&bob, &["--listen", "0"], false);
    let port = server.port();
    send(&ada, &format!("127.0.0.1:{port}"), "over IPv4\n");
    send(&ada, &format!("[::1]:{port}"), "over IPv6\n");
    // A receipt comes once the message is written out; the pipe to us may
    // lag a little behind.
    let expected = "over IPv4\nover IPv6\n";
    let deadline = Instant::now() + secs(10);
    while server.stdout() != expected.as_bytes() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(String::from_utf8(server.stdout()).unwrap(), expected);
    let stderr = server.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], format!("listening on [::]:{port}"), "{stderr}");
    assert_eq!(
        lines[1], "Peers can reach you (IPv6 and IPv4) at:",
        "{stderr}"
    );
    let listed: Vec<&str> = lines[2..]
        .iter()
        .take_while(|line| line.starts_with("    "))
        .map(|line| line.split_whitespace().next().unwrap())
        .collect();
    let v4 = format!("127.0.0.1:{port}");
    let v6 = format!("[::1]:{port}");
    assert!(listed.contains(&v4.as_str()), "{stderr}");
    assert!(listed.contains(&v6.as_str()), "{stderr}");
    let first_loopback = listed.iter().position(|a| *a == v4 || *a == v6).unwrap();
    assert!(
        listed[first_loopback..]
            .iter()
            .all(|a| a.starts_with("127.") || a.starts_with("[::1]")),
        "loopback last: {stderr}"
    );
    assert!(stderr.contains("Your fingerprint is SHA256:"), "{stderr}");
}

#[test]
fn a_malformed_listen_address_is_a_usage_error() {
    let bob = TestHome::with_identity("responder");
    for bad in ["::1:7777", "[::1]", "host:", "70000"] {
        bob.run(&["serve", "--listen", bad]).fails(
            2,
            &[
                "malformed listening address",
                "PORT, :PORT, HOST:PORT or [V6]:PORT",
            ],
        );
    }
}
