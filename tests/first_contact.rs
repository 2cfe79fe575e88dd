//! An interactive `connect` to a responder whose key is unknown shows that
//! key and asks before it reveals who we are (issue 11, item 11), on a real
//! pseudo-terminal. The responders here are written with the crate's public
//! API, so the tests see exactly what each one learned: nothing, until the
//! user says yes.

use crate::common;

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use chat::crypto::PrivateKey;
use chat::net::NetError;
use chat::protocol::{CloseReason, ProtocolError};
use common::{Running, TestHome, fingerprint_of, fixture_key, secs};
use expectrl::session::OsSession;
use expectrl::{Expect, Session};

const PROMPT: &str = "continue? (yes/no/paste fingerprint)";

fn key(name: &str) -> PrivateKey {
    let pem = std::fs::read_to_string(fixture_key(name)).unwrap();
    PrivateKey::from_pkcs8_pem(&pem, || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

/// What a responder learned: the initiator's fingerprint, or why not.
type Learned = Result<String, NetError>;

/// A responder on a free port answering one connection per entry of
/// `keys` (a fixture key name and a nickname), in order. Each connection's
/// socket is also handed to the test (`sockets`), which may hang it up.
struct Responder {
    port: u16,
    learned: mpsc::Receiver<Learned>,
    sockets: mpsc::Receiver<TcpStream>,
}

impl Responder {
    fn start(keys: &[(&'static str, &'static str)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (report, learned) = mpsc::channel();
        let (hand_over, sockets) = mpsc::channel();
        let keys = keys.to_vec();
        thread::spawn(move || {
            for (name, nickname) in keys {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let _ = hand_over.send(stream.try_clone().unwrap());
                let report = report.clone();
                thread::spawn(move || {
                    let mut rng = rand::rng();
                    let fresh = PrivateKey::generate(&mut rng, 2048).unwrap();
                    match chat::net::respond(
                        stream,
                        &mut rng,
                        &key(name),
                        nickname,
                        || true,
                        || fresh,
                    ) {
                        Ok(mut connected) => {
                            let peer = connected.established.peer.key.fingerprint();
                            let _ = report.send(Ok(peer.to_string()));
                            // Stay until the initiator leaves.
                            let _ = std::io::copy(&mut connected.stream, &mut std::io::sink());
                        }
                        Err(e) => {
                            let _ = report.send(Err(e));
                        }
                    }
                });
            }
        });
        Self {
            port,
            learned,
            sockets,
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the next finished handshake learned.
    fn learned(&self) -> Learned {
        self.learned
            .recv_timeout(secs(30))
            .expect("the responder finished")
    }

    /// Whether a handshake has finished (it must not have, while we ask).
    fn finished_any(&self) -> bool {
        self.learned.try_recv().is_ok()
    }
}

/// `chat connect` on a pseudo-terminal.
struct Terminal {
    session: OsSession,
    seen: String,
}

impl Terminal {
    fn connect(home: &TestHome, target: &str, extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
        command
            .arg("--home")
            .arg(home.path())
            .args(["connect", target, "--name", "ada"])
            .args(extra)
            .env_remove("CHAT_HOME")
            .env("TERM", "xterm-256color");
        let mut session = Session::spawn(command).expect("spawn chat on a pty");
        session.set_expect_timeout(Some(Duration::from_secs(30)));
        Self {
            session,
            seen: String::new(),
        }
    }

    /// Waits for `needle`; returns everything printed up to it.
    #[track_caller]
    fn expect(&mut self, needle: &str) -> String {
        let found = self
            .session
            .expect(needle)
            .unwrap_or_else(|e| panic!("no {needle:?} ({e}); printed so far: {}", self.seen));
        let before = String::from_utf8_lossy(found.before()).into_owned();
        self.seen.push_str(&before);
        self.seen.push_str(needle);
        before
    }

    fn line(&mut self, text: &str) {
        for c in text.chars() {
            self.session.send(c.to_string()).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
        self.session.send("\r").unwrap();
    }

    fn exit_code(&mut self) -> i32 {
        use expectrl::process::unix::WaitStatus;
        let deadline = std::time::Instant::now() + secs(30);
        loop {
            match self.session.get_process().status() {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::StillAlive) if std::time::Instant::now() < deadline => {
                    let mut buf = [0u8; 4096];
                    if let Ok(n) = self.session.try_read(&mut buf) {
                        self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                other => panic!("chat did not exit: {other:?}; printed: {}", self.seen),
            }
        }
    }
}

fn abandoned(learned: Learned) -> bool {
    matches!(
        learned,
        Err(NetError::Protocol(ProtocolError::Abandoned(
            CloseReason::Untrusted
        )))
    )
}

/// The key is shown and the question asked while the responder still knows
/// nothing about us; "no" leaves without revealing anything.
#[test]
fn an_unknown_key_is_shown_and_asked_about_before_we_reveal_ourselves() {
    let responder = Responder::start(&[("transient", "bob")]);
    let ada = TestHome::with_identity("initiator");
    let mut terminal = Terminal::connect(&ada, &responder.address(), &[]);
    let shown = terminal.expect(PROMPT);
    assert!(
        shown.contains(&format!(
            "The peer at {} calls itself \"bob\". Its key is not known:",
            responder.address()
        )) && shown.contains(&fingerprint_of("transient")),
        "{shown}"
    );
    assert!(
        !responder.finished_any(),
        "the responder learned who we are"
    );
    terminal.line("no");
    terminal.expect("nothing about you was sent to it");
    assert_eq!(terminal.exit_code(), 4);
    assert!(abandoned(responder.learned()));
    assert!(!ada.file("known_peers.toml").exists());
}

/// Pasting the fingerprint: the right one goes on and pins the key; any
/// other refuses without revealing anything. A look-alike of a pinned name
/// is pointed out, and pinned under a name of its own.
#[test]
fn a_pasted_fingerprint_is_checked() {
    // The wrong fingerprint.
    let responder = Responder::start(&[("transient", "bob")]);
    let ada = TestHome::with_identity("initiator");
    let mut terminal = Terminal::connect(&ada, &responder.address(), &[]);
    terminal.expect(PROMPT);
    terminal.line(&fingerprint_of("responder"));
    terminal.expect("is not the key of the peer");
    assert_eq!(terminal.exit_code(), 4);
    assert!(abandoned(responder.learned()));
    assert!(!ada.file("known_peers.toml").exists());

    // The right one, from a peer whose nickname imitates a pinned contact.
    ada.run(&["peers", "add", "bob", &fingerprint_of("responder")])
        .ok();
    let responder = Responder::start(&[("transient", "B\u{43e}b")]);
    let mut terminal = Terminal::connect(&ada, &responder.address(), &[]);
    let shown = terminal.expect(PROMPT);
    assert!(
        shown.contains("which looks like your pinned contact \"bob\": this key is not bob's."),
        "{shown}"
    );
    // Without the SHA256: prefix, and with spaces around it, as pasted.
    let fingerprint = fingerprint_of("transient");
    terminal.line(&format!(" {} ", fingerprint.trim_start_matches("SHA256:")));
    let shown = terminal.expect("\u{2713}> ");
    assert_eq!(responder.learned().unwrap(), fingerprint_of("initiator"));
    assert!(shown.contains("pinned its key as \"peer-"), "{shown}");
    terminal.line("/quit");
    assert_eq!(terminal.exit_code(), 0);
    let store = std::fs::read_to_string(ada.file("known_peers.toml")).unwrap();
    assert!(store.contains(&fingerprint), "{store}");
    assert!(store.contains("name = \"peer-"), "{store}");
}

/// A person may answer after the responder gave up on the handshake: then
/// chat dials again and goes on only with the key the user accepted.
#[test]
fn an_answer_after_the_responder_gave_up_dials_again_for_the_same_key() {
    let bob = TestHome::with_identity("responder");
    let mut command = common::serve_command(&bob, &["--once", "--accept-new", "--json"]);
    command.env("CHAT_HANDSHAKE_TIMEOUT", "2");
    let server = Running::spawn(command);
    let target = format!("127.0.0.1:{}", server.port());
    let ada = TestHome::with_identity("initiator");
    let mut terminal = Terminal::connect(&ada, &target, &[]);
    terminal.expect(PROMPT);
    server.wait_for_stderr("timed out", secs(20));
    terminal.line("yes");
    terminal.expect("Dialling again; only the key you accepted");
    terminal.expect("NOT VERIFIED");
    terminal.expect("bob (unverified)> ");
    terminal.line("/quit");
    assert_eq!(terminal.exit_code(), 0);
    let outcome = server.finish(secs(20));
    assert!(
        outcome.stdout.contains(&fingerprint_of("initiator")),
        "{outcome:#?}"
    );
}

/// ...and if another key answers the second time, it is refused, and it
/// learns nothing.
#[test]
fn another_key_on_the_second_dial_is_refused() {
    let responder = Responder::start(&[("responder", "bob"), ("transient", "bob")]);
    let ada = TestHome::with_identity("initiator");
    let mut terminal = Terminal::connect(&ada, &responder.address(), &[]);
    terminal.expect(PROMPT);
    // The first responder gives up, as a server past its deadline does.
    let first = responder.sockets.recv_timeout(secs(10)).unwrap();
    first.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(responder.learned().is_err());
    terminal.line("yes");
    terminal.expect("Dialling again");
    terminal.expect(&format!(
        "the peer now presents {}, not the key you accepted ({})",
        fingerprint_of("transient"),
        fingerprint_of("responder")
    ));
    assert_eq!(terminal.exit_code(), 4);
    assert!(abandoned(responder.learned()));
    assert!(!ada.file("known_peers.toml").exists());
}

/// `--accept-new` and `--expect` do not ask.
#[test]
fn accept_new_and_expect_do_not_ask() {
    for options in [
        vec!["--accept-new".to_string()],
        vec!["--expect".to_string(), fingerprint_of("transient")],
    ] {
        let responder = Responder::start(&[("transient", "bob")]);
        let ada = TestHome::with_identity("initiator");
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        let mut terminal = Terminal::connect(&ada, &responder.address(), &options);
        let shown = terminal.expect("bob \u{2713}> ");
        assert!(!shown.contains(PROMPT), "{shown}");
        assert_eq!(responder.learned().unwrap(), fingerprint_of("initiator"));
        terminal.line("/quit");
        assert_eq!(terminal.exit_code(), 0);
    }
}
