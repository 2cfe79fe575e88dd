//! Fitting the shell: completion scripts for every shell clap_complete knows
//! (the bash one parsed by bash itself), a manual page that `man` renders
//! without a warning, and `--color` / `NO_COLOR`.

use crate::common;

use std::process::{Command, Stdio};

use common::TestHome;

fn chat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(args)
        .env_remove("CHAT_HOME")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run chat")
}

#[test]
fn completions_for_every_shell_and_bash_parses_its_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = chat(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).unwrap();
        // Every subcommand and a long option are offered.
        for word in ["serve", "connect", "send", "peers", "accept-new"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
        // The shells that are installed check their own script's syntax.
        let checker = match shell {
            "bash" => Some(("bash", "-n")),
            "zsh" => Some(("zsh", "-n")),
            "fish" => Some(("fish", "--no-execute")),
            _ => None,
        };
        let Some((program, flag)) = checker else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat-completion");
        std::fs::write(&path, &script).unwrap();
        match Command::new(program).arg(flag).arg(&path).output() {
            Ok(check) => assert!(
                check.status.success(),
                "{program} {flag} rejects the script: {}",
                String::from_utf8_lossy(&check.stderr)
            ),
            // bash is always there (CI runs in it); the others only if installed.
            Err(e) if program != "bash" && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot run {program}: {e}"),
        }
    }
    let output = chat(&["completions", "tcsh"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_manual_page_renders_without_warnings() {
    let output = chat(&["man"]);
    assert!(output.status.success(), "{output:?}");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("chat.1");
    std::fs::write(&page, &output.stdout).unwrap();
    // `man -l` formats a local file; .ci/run installs man-db if it is missing.
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("man (man-db) renders the page; apt-get install man-db");
    let stderr = String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success(), "man failed: {stderr}");
    assert!(stderr.trim().is_empty(), "man warns: {stderr}");
    // man formats for a printer when not on a terminal: bold is "X\bX".
    let text = strip_overstrike(&String::from_utf8_lossy(&rendered.stdout));
    for section in [
        "NAME",
        "SYNOPSIS",
        "CHAT SERVE",
        "CHAT CONNECT",
        "CHAT SEND",
        "CHAT PEERS ADD",
        "EXIT STATUS",
        "ENVIRONMENT",
    ] {
        assert!(text.contains(section), "the page lacks {section}:\n{text}");
    }
}

#[test]
fn color_follows_the_flag_and_no_color() {
    let home = TestHome::empty();
    let run = |args: &[&str], no_color: Option<&str>| {
        let mut command = home.chat();
        command.args(args);
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        String::from_utf8_lossy(&command.output().unwrap().stderr).into_owned()
    };
    // No identity yet: `fingerprint` fails with one error line.
    let always = run(&["--color", "always", "fingerprint"], None);
    assert!(always.contains("\x1b[1;31mchat:\x1b[0m"), "{always:?}");
    let always = run(&["--color=always", "fingerprint"], Some("1"));
    assert!(
        always.contains('\x1b'),
        "always wins over NO_COLOR: {always:?}"
    );
    for args in [
        &["--color", "never", "fingerprint"][..],
        &["fingerprint"][..],
    ] {
        let plain = run(args, None);
        assert!(plain.starts_with("chat: "), "{args:?}: {plain:?}");
        assert!(!plain.contains('\x1b'), "{args:?}: {plain:?}");
    }
}

#[test]
fn on_a_terminal_auto_colours_unless_no_color_is_set() {
    use expectrl::Expect;
    let home = TestHome::empty();
    let printed = |no_color: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
        command
            .arg("--home")
            .arg(home.path())
            .arg("fingerprint")
            .env_remove("CHAT_HOME")
            .env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let mut session = expectrl::Session::spawn(command).expect("spawn on a pty");
        session.set_expect_timeout(Some(std::time::Duration::from_secs(20)));
        let found = session
            .expect("init` to create one")
            .expect("the error line");
        String::from_utf8_lossy(found.before()).into_owned()
    };
    assert!(printed(None).contains("\x1b[1;31m"), "auto on a terminal");
    assert!(
        printed(Some("")).contains("\x1b[1;31m"),
        "an empty NO_COLOR is unset"
    );
    assert!(!printed(Some("1")).contains('\x1b'), "NO_COLOR=1");
}

/// Text without nroff's overstrike (bold "X\bX", underline "_\bX").
fn strip_overstrike(text: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        out.push(c);
    }
    out.into_iter().collect()
}
