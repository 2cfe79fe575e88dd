//! The REPL on a real pseudo-terminal: messages appear above the prompt
//! while a half-typed line survives, both sides see the same safety
//! number, `/trust` pins the key, and escape sequences from the peer arrive
//! neutralised.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestHome, fingerprint_of, secs};
use expectrl::session::OsSession;
use expectrl::{Expect, Regex, Session};

/// `chat` on a pseudo-terminal, with everything it printed kept.
struct Terminal {
    session: OsSession,
    seen: Vec<u8>,
}

impl Terminal {
    fn start(home: &TestHome, args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
        command
            .arg("--home")
            .arg(home.path())
            .args(args)
            .env_remove("CHAT_HOME")
            .env("TERM", "xterm-256color");
        let mut session = Session::spawn(command).expect("spawn chat on a pty");
        session.set_expect_timeout(Some(Duration::from_secs(20)));
        Self {
            session,
            seen: Vec::new(),
        }
    }

    /// Waits for `needle`; returns everything printed up to and including it.
    #[track_caller]
    fn expect(&mut self, needle: &str) -> String {
        let found = self.session.expect(needle).unwrap_or_else(|e| {
            panic!(
                "no {needle:?} ({e}); printed so far: {}",
                String::from_utf8_lossy(&self.seen)
            )
        });
        self.seen.extend_from_slice(found.before());
        self.seen.extend_from_slice(found.get(0).unwrap());
        String::from_utf8_lossy(found.before()).into_owned() + needle
    }

    fn expect_regex(&mut self, pattern: &str) -> Vec<String> {
        let found = self.session.expect(Regex(pattern)).unwrap();
        self.seen.extend_from_slice(found.before());
        self.seen.extend_from_slice(found.get(0).unwrap());
        (0..4)
            .map_while(|i| found.get(i))
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect()
    }

    fn type_text(&mut self, text: &str) {
        // One keystroke at a time, as a person types; rustyline may drop
        // input that arrives between two prompts faster than that.
        for c in text.chars() {
            self.session.send(c.to_string()).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn line(&mut self, text: &str) {
        self.type_text(text);
        self.session.send("\r").unwrap();
    }

    /// The safety number `/fingerprint` prints.
    fn safety_number(&mut self) -> String {
        self.line("/fingerprint");
        let groups = self.expect_regex(r"Safety number:  ((?:\d{5} ){11}\d{5})");
        groups[1].clone()
    }
}

fn port_of(terminal: &mut Terminal) -> u16 {
    terminal.expect_regex(r"listening on 127\.0\.0\.1:(\d+)")[1]
        .parse()
        .unwrap()
}

#[test]
fn a_conversation_on_two_terminals() {
    let bob_home = TestHome::with_identity("responder");
    let ada_home = TestHome::with_identity("initiator");
    let mut bob = Terminal::start(
        &bob_home,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--once",
            "--name",
            "bob",
        ],
    );
    let port = port_of(&mut bob);
    let mut ada = Terminal::start(
        &ada_home,
        &["connect", &format!("127.0.0.1:{port}"), "--name", "ada"],
    );

    // First contact: Ada is asked before she reveals herself; then both
    // conversations open, marked unverified.
    ada.expect("continue? (yes/no/paste fingerprint)");
    ada.line("yes");
    ada.expect("NOT VERIFIED");
    ada.expect("bob (unverified)> ");
    bob.expect("NOT VERIFIED");
    bob.expect("ada (unverified)> ");

    // Bob has half a line typed when Ada's message arrives.
    bob.type_text("half-typ");
    std::thread::sleep(Duration::from_millis(200));
    ada.line("hello from ada");
    bob.expect("[ada ?] hello from ada");
    // The prompt and the half-typed line are drawn again below it...
    bob.expect("half-typ");
    ada.expect("delivered (#1)");
    // ...and finishing it sends the whole line.
    bob.line("ed line");
    ada.expect("[bob ?] half-typed line");

    // Both sides see the same safety number, the documented one for these keys.
    let from_ada = ada.safety_number();
    let from_bob = bob.safety_number();
    assert_eq!(from_ada, from_bob);
    assert_eq!(
        from_ada,
        "04753 42431 95466 32135 91172 98755 69401 17105 67957 58611 67980 71153"
    );

    // /trust pins the key; the prompt turns verified.
    bob.line("/trust");
    bob.expect("Pinned the peer's key as \"ada\"");
    bob.expect("ada \u{2713}> ");
    let store = std::fs::read_to_string(bob_home.file("known_peers.toml")).unwrap();
    assert!(store.contains("name = \"ada\""), "{store}");
    assert!(store.contains(&fingerprint_of("initiator")), "{store}");
    ada.line("second");
    bob.expect("[ada \u{2713}] second");

    // A multi-line message, by a trailing backslash.
    ada.line("one \\");
    ada.expect("... ");
    ada.line("two");
    bob.expect("[ada \u{2713}] one ");
    bob.expect("two");

    // Ada leaves; Bob's prompt is woken and the program ends cleanly.
    ada.line("/quit");
    ada.expect("You left the conversation with bob.");
    bob.expect("ada left the conversation.");
    assert_eq!(wait_exit(&mut ada.session), 0);
    assert_eq!(wait_exit(&mut bob.session), 0);
}

#[test]
fn escape_sequences_from_the_peer_are_neutralised() {
    let bob_home = TestHome::with_identity("responder");
    let mallory = TestHome::with_identity("transient");
    let mut bob = Terminal::start(
        &bob_home,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--once",
            "--name",
            "bob",
        ],
    );
    let port = port_of(&mut bob);

    let payload = "title\x1b]0;pwned\x07clear\x1b[2J\x1b[Hbell\x07cr\rend\u{202e}rtl\u{9b}31m";
    let mut send = mallory.chat();
    send.args([
        "send",
        &format!("127.0.0.1:{port}"),
        "--accept-new",
        "--name",
        "mal\u{202e}lory",
    ])
    .stdin(Stdio::piped());
    let mut sender = common::Running::spawn(send);
    {
        use std::io::Write;
        let mut input = sender.stdin();
        input.write_all(payload.as_bytes()).unwrap();
    }
    bob.expect("NOT VERIFIED");
    let shown = bob.expect("31m");
    let outcome = sender.finish(secs(20));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(
        shown.contains("title^[]0;pwned^Gclear^[[2J^[[Hbell^Gcr^Mend\\u{202e}rtl\\u{9b}31m"),
        "{shown:?}"
    );
    assert!(
        shown.contains("mal\\u{202e}lory"),
        "nickname shown raw: {shown:?}"
    );
    let raw = &bob.seen;
    for forbidden in [
        &b"\x1b]0;pwned"[..],
        b"\x1b[2J",
        b"\x07",
        b"\r\xe2\x80\xae",
        "\u{202e}".as_bytes(),
        b"\xc2\x9b",
    ] {
        assert!(
            !raw.windows(forbidden.len()).any(|w| w == forbidden),
            "{forbidden:?} reached the terminal"
        );
    }
}

fn wait_exit(session: &mut OsSession) -> i32 {
    use expectrl::process::unix::WaitStatus;
    let deadline = std::time::Instant::now() + secs(20);
    loop {
        match session.get_process().status() {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::StillAlive) if std::time::Instant::now() < deadline => {
                // Drain output so the child is never blocked writing.
                let mut buf = [0u8; 4096];
                let _ = session.try_read(&mut buf);
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("chat did not exit: {other:?}"),
        }
    }
}
