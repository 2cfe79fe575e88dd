//! Short options where ssh, curl and nc taught people the letters: `-v`
//! (verbose), `-p PORT` (connect, send: the port to dial, like ssh's -p) and
//! `-l` (serve: where to listen), in --help, the bash completion and the
//! manual page; and `chat send -p PORT HOST` reaching a serve on that port.

use crate::common;

use std::process::Stdio;

use common::{TestHome, secs, serve};

fn help(home: &TestHome, command: &str) -> String {
    home.run(&[command, "--help"]).ok().to_string()
}

#[test]
fn help_lists_the_short_options_where_they_belong() {
    let home = TestHome::empty();
    for command in ["connect", "send"] {
        let text = help(&home, command);
        assert!(text.contains("-p, --port <PORT>"), "{command}:\n{text}");
        assert!(text.contains("-v, --verbose"), "{command}:\n{text}");
        assert!(!text.contains("-l, --listen"), "{command}:\n{text}");
    }
    let text = help(&home, "serve");
    assert!(text.contains("-l, --listen"), "serve:\n{text}");
    assert!(text.contains("-v, --verbose"), "serve:\n{text}");
    assert!(!text.contains("-p, --port"), "serve:\n{text}");
}

#[test]
fn bash_completion_and_man_page_offer_the_short_options() {
    let home = TestHome::empty();
    let bash = home.run(&["completions", "bash"]).ok().to_string();
    // clap_complete writes one `opts="..."` line per subcommand.
    let opts = |command: &str| -> Vec<String> {
        let marker = format!("chat__subcmd__{command})");
        let start = bash
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker} case"));
        let rest = &bash[start..];
        let line = rest.lines().find(|l| l.contains("opts=\"")).unwrap();
        let words = line.split('"').nth(1).unwrap();
        words.split_whitespace().map(str::to_string).collect()
    };
    for command in ["connect", "send"] {
        let line = opts(command);
        for word in ["-p", "--port", "-v"] {
            assert!(
                line.iter().any(|w| w == word),
                "{command} lacks {word}: {line:?}"
            );
        }
    }
    let line = opts("serve");
    for word in ["-l", "--listen", "-v"] {
        assert!(
            line.iter().any(|w| w == word),
            "serve lacks {word}: {line:?}"
        );
    }
    let man = home.run(&["man"]).ok().to_string();
    for word in [
        r"\-p\fR, \fB\-\-port",
        r"\-l\fR, \fB\-\-listen",
        r"\-v\fR, \fB\-\-verbose",
    ] {
        assert!(man.contains(word), "the man page lacks {word}");
    }
}

#[test]
fn send_with_p_dials_that_port() {
    let bob = TestHome::with_identity("responder");
    let ada = TestHome::with_identity("initiator");
    let server = serve(&bob, &["--accept-new"], Stdio::null());
    let port = server.port().to_string();
    ada.run_with_input(
        &["send", "-p", &port, "127.0.0.1", "--accept-new"],
        b"hello by -p\n",
    )
    .ok();
    let received = server.finish(secs(30));
    assert_eq!(received.code, Some(0), "{}", received.stderr);
    assert!(
        received.stdout.contains("hello by -p"),
        "{}",
        received.stdout
    );
}

#[test]
fn p_refuses_a_different_written_port_and_a_bad_port() {
    let ada = TestHome::with_identity("initiator");
    let out = ada.run_with_input(&["send", "-p", "9000", "127.0.0.1:9001"], b"x\n");
    let err = out.fails(2, &["port 9001", "-p says 9000"]);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // The same port twice is no conflict (nothing listens there: a network error).
    let out = ada.run_with_input(&["send", "-p", "1", "[::1]:1", "--accept-new"], b"x\n");
    assert_ne!(out.code, Some(2), "{}", out.stderr);
    let out = ada.run_with_input(&["send", "-p", "0", "127.0.0.1"], b"x\n");
    out.fails(2, &["not a port"]);
}
