//! The REPL on a real pseudo-terminal of 80x24, checked on the screen a
//! person sees (rendered by `vt100`): messages appear above the prompt while
//! a half-typed line survives, both sides see the same safety number,
//! `/trust` pins the key, escape sequences from the peer arrive neutralised,
//! nothing typed while no one is connected is ever sent, no pasted line is
//! lost, a message too large for the screen is kept for `/save`, and the
//! listener's log prints above the prompt, rate-limited.

use crate::common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;

use common::pty::Pty;
use common::{Running, TestHome, fingerprint_of, secs};

fn serve_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--name", "bob"]
        .map(String::from)
        .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn bob_on_a_terminal(home: &TestHome, extra: &[&str]) -> Pty {
    let args = serve_args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Pty::chat(home, &args)
}

/// Waits until the cursor's row (the prompt) reads `row`.
#[track_caller]
fn wait_prompt(pty: &mut Pty, row: &str) {
    pty.wait_until(&format!("the prompt row {row:?}"), |pty| {
        (pty.cursor_row() == row.trim_end()).then_some(())
    });
}

/// The safety number `/fingerprint` prints.
fn safety_number(pty: &mut Pty) -> String {
    pty.line("/fingerprint");
    pty.wait_until("a safety number", |pty| {
        let text = pty.text();
        let at = text.find("Safety number:")?;
        let digits: String = text[at..]
            .chars()
            .skip("Safety number:".len())
            .take_while(|c| c.is_ascii_digit() || c.is_whitespace())
            .filter(char::is_ascii_digit)
            .collect();
        (digits.len() == 60).then(|| {
            (0..12)
                .map(|i| &digits[i * 5..i * 5 + 5])
                .collect::<Vec<_>>()
                .join(" ")
        })
    })
}

/// The rows of a peer's message that begins with `first`: its first row
/// and the continuation rows under it, as one text.
fn message_rows(pty: &mut Pty, first: &str) -> Vec<String> {
    let history = pty.history();
    let at = history
        .iter()
        .position(|row| row.starts_with(first))
        .unwrap_or_else(|| panic!("no row starts with {first:?}"));
    let mut rows = vec![history[at].clone()];
    rows.extend(
        history[at + 1..]
            .iter()
            .take_while(|row| row.starts_with('\u{2502}'))
            .cloned(),
    );
    rows
}

#[test]
fn a_conversation_on_two_terminals() {
    let bob_home = TestHome::with_identity("responder");
    let ada_home = TestHome::with_identity("initiator");
    let mut bob = bob_on_a_terminal(&bob_home, &["--once"]);
    let port = bob.port();
    let mut ada = Pty::chat(
        &ada_home,
        &["connect", &format!("127.0.0.1:{port}"), "--name", "ada"],
    );

    // First contact: Ada is asked before she reveals herself; then both
    // conversations open, marked unverified.
    ada.wait_for("continue? (yes/no/paste fingerprint)");
    ada.line("yes");
    ada.wait_for("NOT VERIFIED");
    wait_prompt(&mut ada, "bob (unverified)> ");
    bob.wait_for("NOT VERIFIED");
    wait_prompt(&mut bob, "ada (unverified)> ");

    // Bob has half a line typed when Ada's message arrives.
    bob.send(b"half-typ");
    wait_prompt(&mut bob, "ada (unverified)> half-typ");
    ada.line("hello from ada");
    bob.wait_for("[ada ?] hello from ada");
    // The prompt and the half-typed line are drawn again below it...
    wait_prompt(&mut bob, "ada (unverified)> half-typ");
    ada.wait_for("delivered (#1)");
    // ...and finishing it sends the whole line.
    bob.line("ed line");
    ada.wait_for("[bob ?] half-typed line");

    // Both sides see the same safety number, the documented one for these keys.
    let from_ada = safety_number(&mut ada);
    let from_bob = safety_number(&mut bob);
    assert_eq!(from_ada, from_bob);
    assert_eq!(
        from_ada,
        "04753 42431 95466 32135 91172 98755 69401 17105 67957 58611 67980 71153"
    );

    // /trust pins the key; the prompt turns verified.
    bob.line("/trust");
    bob.wait_for("Pinned the peer's key as \"ada\"");
    wait_prompt(&mut bob, "ada \u{2713}> ");
    let store = std::fs::read_to_string(bob_home.file("known_peers.toml")).unwrap();
    assert!(store.contains("name = \"ada\""), "{store}");
    assert!(store.contains(&fingerprint_of("initiator")), "{store}");
    ada.line("second");
    bob.wait_for("[ada \u{2713}] second");

    // A multi-line message, by a trailing backslash: its second line is
    // marked as the continuation of Ada's message.
    ada.line("one \\");
    wait_prompt(&mut ada, "... ");
    ada.line("two");
    bob.wait_for("\u{2502} two");
    assert_eq!(
        message_rows(&mut bob, "[ada \u{2713}] one"),
        ["[ada \u{2713}] one", "\u{2502} two"]
    );

    // Ada leaves once all she sent is delivered; Bob's prompt is woken and
    // the program ends cleanly.
    ada.wait_for("delivered (#3)");
    ada.line("/quit");
    ada.wait_for("You left the conversation with bob.");
    bob.wait_for("ada left the conversation.");
    assert_eq!(ada.exit_code(), 0);
    assert_eq!(bob.exit_code(), 0);
}

#[test]
fn escape_sequences_from_the_peer_are_neutralised() {
    let bob_home = TestHome::with_identity("responder");
    let mallory = TestHome::with_identity("transient");
    let mut bob = bob_on_a_terminal(&bob_home, &["--once"]);
    let port = bob.port();

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
    let mut sender = Running::spawn(send);
    sender.stdin().write_all(payload.as_bytes()).unwrap();
    bob.wait_for("NOT VERIFIED");
    bob.wait_for("31m");
    let outcome = sender.finish(secs(20));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let label = "[mal\\u{202e}lory ?] ";
    let shown: String = message_rows(&mut bob, label)
        .iter()
        .map(|row| {
            row.strip_prefix(label)
                .or_else(|| row.strip_prefix("\u{2502} "))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        shown,
        "title^[]0;pwned^Gclear^[[2J^[[Hbell^Gcr^Mend\\u{202e}rtl\\u{9b}31m"
    );
    let raw = &bob.raw;
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

/// Issue 11, item 1: text typed into `chat serve` before anyone connects
/// is never sent, not even once someone has.
#[test]
fn nothing_typed_while_no_one_is_connected_is_sent() {
    let bob_home = TestHome::with_identity("responder");
    let mallory = TestHome::with_identity("transient");
    let mut bob = bob_on_a_terminal(&bob_home, &["--once"]);
    let port = bob.port();

    wait_prompt(&mut bob, "(no one connected)> ");
    bob.line("secret one");
    bob.wait_for("not sent: no one is connected");
    // Half a line, still being typed when a stranger connects.
    bob.send(b"secret two");
    wait_prompt(&mut bob, "(no one connected)> secret two");

    let mut connect = mallory.chat();
    connect
        .args([
            "connect",
            &format!("127.0.0.1:{port}"),
            "--accept-new",
            "--json",
            "--name",
            "mallory",
        ])
        .stdin(Stdio::piped());
    let mut stranger = Running::spawn(connect);
    let stranger_input = stranger.stdin();
    bob.wait_for("NOT VERIFIED");
    // The line begun for no one is still addressed to no one.
    wait_prompt(&mut bob, "(no one connected)> secret two");
    bob.line("");
    bob.wait_for("not sent: you began this line when no one was connected");
    wait_prompt(&mut bob, "mallory (unverified)> ");
    bob.line("typed for mallory");
    bob.wait_for("delivered (#1)");
    bob.line("/quit");
    drop(stranger_input);
    let outcome = stranger.finish(secs(20));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let texts: Vec<String> = outcome
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|event| event["event"] == "message")
        .map(|event| event["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["typed for mallory\n"]);
    assert_eq!(bob.exit_code(), 0);
}

/// Messages received by a `chat serve --once --json` without a terminal.
fn json_messages(server: &Running) -> Vec<String> {
    String::from_utf8_lossy(&server.stdout())
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "message")
        .map(|event| event["text"].as_str().unwrap().to_string())
        .collect()
}

/// Issue 11, item 2: 200 lines pasted at once (no bracketed paste) all
/// arrive, in order, each its own message; a bracketed paste of several
/// lines is one message.
#[test]
fn pasted_lines_all_arrive_in_order() {
    let bob_home = TestHome::with_identity("responder");
    let ada_home = TestHome::with_identity("initiator");
    let mut command = common::serve_command(&bob_home, &["--once", "--accept-new", "--json"]);
    command.stdin(Stdio::piped());
    let mut bob = Running::spawn(command);
    let bob_input = bob.stdin();
    let port = bob.port();
    let mut ada = Pty::chat(
        &ada_home,
        &[
            "connect",
            &format!("127.0.0.1:{port}"),
            "--accept-new",
            "--name",
            "ada",
        ],
    );
    wait_prompt(&mut ada, "bob \u{2713}> ");

    let lines: Vec<String> = (1..=200).map(|i| format!("line {i:03}")).collect();
    // Each typed line goes out with its line ending.
    let sent: Vec<String> = lines.iter().map(|line| format!("{line}\n")).collect();
    let mut paste = lines.join("\r");
    paste.push('\r');
    ada.send(paste.as_bytes());
    let deadline = std::time::Instant::now() + secs(30);
    while json_messages(&bob).len() < 200 && std::time::Instant::now() < deadline {
        ada.pump();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(json_messages(&bob), sent);

    ada.send(b"\x1b[200~one\rtwo\r\nthree\x1b[201~");
    wait_prompt(&mut ada, "bob \u{2713}> one\u{21b5}two\u{21b5}three");
    ada.send(b"\r");
    ada.wait_for("delivered (#201)");
    ada.line("/quit");
    assert_eq!(ada.exit_code(), 0);
    drop(bob_input);
    let outcome = bob.finish(secs(20));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let messages = json_messages_of(&outcome.stdout);
    assert_eq!(messages.len(), 201);
    assert_eq!(messages[200], "one\ntwo\nthree\n");
}

/// What is typed straight after the answer to the first-contact question
/// (`yes`, then a message, in one go) is not lost between the question and
/// the REPL.
#[test]
fn typing_ahead_of_the_first_contact_question_loses_nothing() {
    let bob_home = TestHome::with_identity("responder");
    let ada_home = TestHome::with_identity("initiator");
    let mut command = common::serve_command(&bob_home, &["--once", "--accept-new", "--json"]);
    command.stdin(Stdio::piped());
    let mut bob = Running::spawn(command);
    let bob_input = bob.stdin();
    let port = bob.port();
    let mut ada = Pty::chat(
        &ada_home,
        &["connect", &format!("127.0.0.1:{port}"), "--name", "ada"],
    );
    ada.wait_for("continue? (yes/no/paste fingerprint)");
    ada.send(b"yes\rtyped ahead\r");
    ada.wait_for("delivered (#1)");
    ada.line("/quit");
    assert_eq!(ada.exit_code(), 0);
    drop(bob_input);
    let outcome = bob.finish(secs(20));
    assert_eq!(json_messages_of(&outcome.stdout), ["typed ahead\n"]);
}

fn json_messages_of(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "message")
        .map(|event| event["text"].as_str().unwrap().to_string())
        .collect()
}

/// Issue 11, item 4: a message over the screen limit shows its first lines
/// and its size; `/save PATH` writes it byte for byte, and never over an
/// existing file.
#[test]
fn a_message_too_large_for_the_screen_is_kept_for_save() {
    let bob_home = TestHome::with_identity("responder");
    let mallory = TestHome::with_identity("transient");
    let mut bob = bob_on_a_terminal(&bob_home, &[]);
    let port = bob.port();

    // 200 KiB: numbered lines, bytes that are not text, and a last line.
    let mut message = Vec::new();
    let mut i = 0;
    while message.len() < 200 * 1024 {
        i += 1;
        message.extend_from_slice(format!("row {i:05} of the report\n").as_bytes());
        if i % 100 == 0 {
            message.extend_from_slice(b"\x00\xff\x1b[2J\r\n");
        }
    }
    message.extend_from_slice(b"THE-END");
    let mut send = mallory.chat();
    send.args([
        "send",
        &format!("127.0.0.1:{port}"),
        "--accept-new",
        "--name",
        "mallory",
    ])
    .stdin(Stdio::piped());
    let mut sender = Running::spawn(send);
    sender.stdin().write_all(&message).unwrap();
    bob.wait_for("type /save PATH to write all of it to a file");
    let outcome = sender.finish(secs(20));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    bob.wait_for("mallory left the conversation.");

    let text = bob.text();
    assert!(
        text.contains(&format!("is complete: 200.0 KiB ({} bytes)", message.len())),
        "{text}"
    );
    assert!(
        text.contains("[mallory ?] row 00001 of the report"),
        "{text}"
    );
    assert!(!text.contains("THE-END"), "the whole message was shown");
    assert!(
        !text.contains("row 00100 of"),
        "more than the first lines were shown"
    );
    assert!(
        bob.raw.len() < 20 * 1024,
        "{} bytes reached the terminal",
        bob.raw.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.bin");
    bob.line(&format!("/save {}", path.display()));
    bob.wait_for("Saved message #1 from mallory");
    assert_eq!(std::fs::read(&path).unwrap(), message);
    bob.line(&format!("/save {}", path.display()));
    bob.wait_for("already exists; choose another name");
    assert_eq!(std::fs::read(&path).unwrap(), message);
    bob.line("/quit");
    assert_eq!(bob.exit_code(), 0);
}

/// Issue 11, item 5: the listener's log lines print above the prompt,
/// never across the line being typed, and a flood of them is cut down to
/// a few and a count.
#[test]
fn listener_log_prints_above_the_prompt_and_is_rate_limited() {
    let bob_home = TestHome::with_identity("responder");
    let mut bob = bob_on_a_terminal(&bob_home, &[]);
    let port = bob.port();
    wait_prompt(&mut bob, "(no one connected)> ");
    bob.send(b"half-typed");
    wait_prompt(&mut bob, "(no one connected)> half-typed");

    // Twenty connections that do not speak the protocol, from 127.0.0.2 to
    // 127.0.0.21: each is logged by the listener.
    let sources: Vec<String> = (2..22).map(|i| format!("127.0.0.{i}")).collect();
    for source in &sources {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket
            .connect(
                &format!("127.0.0.1:{port}")
                    .parse::<SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        let mut stream: TcpStream = socket.into();
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    }
    // Every connection is accounted for: logged, or counted as suppressed.
    let (logged, suppressed) = bob.wait_until("every connection logged or counted", |pty| {
        let history = pty.history();
        let logged = history
            .iter()
            .filter(|row| sources.iter().any(|s| row.contains(&format!("{s}:"))))
            .count();
        let suppressed: usize = history
            .iter()
            .filter_map(|row| {
                row.strip_prefix("(")?
                    .strip_suffix(" more listener messages suppressed)")?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        (logged + suppressed == sources.len()).then_some((logged, suppressed))
    });
    assert!(
        logged <= 10 && suppressed >= 10,
        "{logged} log lines printed, {suppressed} suppressed:\n{}",
        bob.dump()
    );
    // The half-typed line is intact, on the prompt row only.
    wait_prompt(&mut bob, "(no one connected)> half-typed");
    let history = bob.history();
    let typed: Vec<&String> = history
        .iter()
        .filter(|r| r.contains("half-typed"))
        .collect();
    assert_eq!(typed, ["(no one connected)> half-typed"], "{}", bob.dump());
    bob.send(b"\x03");
    bob.line("/quit");
    assert_eq!(bob.exit_code(), 0);
}
