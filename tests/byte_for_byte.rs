//! Issue 13, item 6: what `chat send` reads arrives byte for byte. Into a
//! pipe or a file a received message is written as it came, with no newline
//! added, so `chat send ADDR < f` into `chat serve --once > out` makes `out`
//! identical to `f`; and `--json` loses no byte either: a payload that is
//! not UTF-8 travels as `base64` instead of `text`.

use crate::common;

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use base64ct::{Base64, Encoding};
use common::{Running, TestHome, noise, secs, serve_command};
use sha2::{Digest, Sha256};

/// `chat serve --once` with `extra`, its standard output going to `out`.
fn serve_into(bob: &TestHome, extra: &[&str], out: &Path) -> Running {
    let mut command = serve_command(bob, &["--once", "--accept-new"]);
    command.args(extra).stdin(Stdio::null());
    Running::spawn_with_stdout(command, File::create(out).unwrap().into())
}

/// `chat send` with `input` as its standard input (a regular file, as with
/// `< f`), then waits for the server to finish.
fn send_stdin(ada: &TestHome, server: Running, input: &Path) {
    let target = format!("127.0.0.1:{}", server.port());
    let sent = ada
        .chat()
        .args(["send", &target, "--accept-new"])
        .stdin(File::open(input).unwrap())
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    let server = server.finish(secs(30));
    assert_eq!(server.code, Some(0), "{server:#?}");
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// `chat send ADDR < f` into `chat serve --once > out`: `out` is `f`, for
/// random binary data and for a text that does not end with a newline.
#[test]
fn send_into_serve_once_gives_the_same_bytes() {
    let mut text = b"first line\nsecond line, and no newline at the end: ".to_vec();
    text.extend_from_slice("caf\u{e9} \u{1f389}".as_bytes());
    for (name, bytes) in [("binary", noise(1 << 20, 7)), ("text", text)] {
        let bob = TestHome::with_identity("responder");
        let ada = TestHome::with_identity("initiator");
        let (input, out) = (ada.file("f"), bob.file("out"));
        fs::write(&input, &bytes).unwrap();
        let server = serve_into(&bob, &[], &out);
        send_stdin(&ada, server, &input);
        let received = fs::read(&out).unwrap();
        assert_eq!(received.len(), bytes.len(), "{name}");
        assert_eq!(sha256(&received), sha256(&bytes), "{name}");
    }
}

/// The bytes of the `message` or `message_data` events of a `--json`
/// output, `text` or `base64` as each event has it (never both).
fn json_payload(stdout: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut bytes = Vec::new();
    let mut fields = Vec::new();
    for line in String::from_utf8(stdout.to_vec()).unwrap().lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["event"] != "message" && event["event"] != "message_data" {
            continue;
        }
        match (event.get("text"), event.get("base64")) {
            (Some(text), None) => {
                fields.push("text".to_string());
                bytes.extend_from_slice(text.as_str().unwrap().as_bytes());
            }
            (None, Some(base64)) => {
                fields.push("base64".to_string());
                bytes.extend(Base64::decode_vec(base64.as_str().unwrap()).unwrap());
            }
            _ => panic!("neither or both of text and base64: {event}"),
        }
    }
    (bytes, fields)
}

/// Bytes that are not UTF-8, in a short message (one `message` event) and
/// in a streamed one (over 1 MiB: `message_data` events, with a character
/// cut at each record boundary): decoded from `--json`, they are exactly
/// what was sent. UTF-8 text still comes as `text`.
#[test]
fn json_loses_no_byte_of_a_payload_that_is_not_utf8() {
    let short = b"caf\xe9 \xff\x00 end \xe2\x82".to_vec();
    // 64 KiB records; a 3-byte character (U+20AC) straddles every boundary.
    let streamed: Vec<u8> = "\u{20ac}"
        .repeat((3 << 20) / 3)
        .into_bytes()
        .into_iter()
        .skip(1)
        .chain(*b"\xc3(")
        .chain("\u{20ac}".repeat(1000).into_bytes())
        .collect();
    let utf8 = "\u{20ac}".repeat((2 << 20) / 3).into_bytes();
    for (name, bytes, all_text) in [
        ("short", short, false),
        ("streamed", streamed, false),
        ("streamed UTF-8", utf8, true),
    ] {
        let bob = TestHome::with_identity("responder");
        let ada = TestHome::with_identity("initiator");
        let (input, out) = (ada.file("f"), bob.file("out"));
        fs::write(&input, &bytes).unwrap();
        let server = serve_into(&bob, &["--json"], &out);
        send_stdin(&ada, server, &input);
        let (received, fields) = json_payload(&fs::read(&out).unwrap());
        assert_eq!(received.len(), bytes.len(), "{name}");
        assert_eq!(sha256(&received), sha256(&bytes), "{name}");
        if all_text {
            assert!(fields.iter().all(|f| f == "text"), "{name}: {fields:?}");
        } else {
            assert!(fields.iter().any(|f| f == "base64"), "{name}: {fields:?}");
        }
    }
}

/// Two batch peers: each line goes out with its line ending, and the other
/// side writes it as it came, so a conversation's input is the other
/// side's output, byte for byte (CRLF and a last line without a newline
/// included).
#[test]
fn batch_input_arrives_as_the_peers_output() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let out = bob.file("out");
    let mut command = serve_command(&bob, &["--once", "--accept-new"]);
    command.stdin(Stdio::null());
    let server = Running::spawn_with_stdout(command, File::create(&out).unwrap().into());
    let mut command = ada.chat();
    command
        .args(["connect", &format!("127.0.0.1:{}", server.port())])
        .arg("--accept-new")
        .stdin(Stdio::piped());
    let mut client = Running::spawn(command);
    let input = b"one\r\n\n//not a command\nlast, unterminated";
    let mut stdin = client.stdin();
    stdin.write_all(input).unwrap();
    drop(stdin);
    client.finish(secs(20)).ok();
    let server = server.finish(secs(20));
    assert_eq!(server.code, Some(0), "{server:#?}");
    assert_eq!(
        fs::read(&out).unwrap(),
        b"one\r\n\n/not a command\nlast, unterminated"
    );
}
