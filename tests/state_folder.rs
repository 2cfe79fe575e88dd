//! The state folder guarded the way ssh guards `~/.ssh`, through the binary:
//!
//! * a folder, `known_peers.toml`, `config.toml`, identity key or passphrase
//!   file that others could change (or read, for secrets), or that belongs
//!   to someone else, is refused with an error that names it and the fix;
//! * nothing is opened or created through a planted symbolic link, and a
//!   FIFO where a file should be does not hang `chat`;
//! * several processes creating an identity at once leave exactly one key,
//!   and each says which key it uses;
//! * every command `chat` suggests repeats the user's `--home` or
//!   `CHAT_HOME`.

use crate::common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Running, TestHome, Unchanged, fingerprint_of, secs};

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A home whose identity is pinned-capable, with a known_peers.toml entry.
fn home_with_peer() -> TestHome {
    let home = TestHome::with_identity("initiator");
    home.run(&["peers", "add", "bob", &fingerprint_of("responder")])
        .ok();
    home
}

#[test]
fn a_state_folder_others_can_write_is_refused() {
    for mode in [0o770, 0o720, 0o707, 0o777, 0o1777] {
        let home = home_with_peer();
        chmod(home.path(), mode);
        let fix = format!("chmod 700 {}", home.path().display());
        let shown = format!("{mode:04o}");
        for args in [
            &["fingerprint"][..],
            &["peers", "list"],
            &["init", "--force"],
        ] {
            let outcome = home.run(args);
            let err = outcome.fails(1, &[&shown, "too open", &fix]);
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        // The folder is the user's to fix: chat changed nothing.
        assert_eq!(
            fs::metadata(home.path()).unwrap().permissions().mode() & 0o7777,
            mode
        );
        assert!(!home.file("identity.pem.old").exists());
        chmod(home.path(), 0o755);
        home.run(&["fingerprint"]).ok();
    }
}

#[test]
fn state_files_others_can_change_are_refused() {
    // known_peers.toml and config.toml may be readable by others, never
    // writable by them.
    let home = home_with_peer();
    let known_peers = home.file("known_peers.toml");
    for mode in [0o664, 0o646, 0o666, 0o620] {
        chmod(&known_peers, mode);
        let untouched = Unchanged::watch(&known_peers);
        let fix = format!("chmod 600 {}", known_peers.display());
        home.run(&["peers", "list"])
            .fails(1, &[&format!("{mode:04o}"), &fix]);
        home.run(&["peers", "add", "carol", &fingerprint_of("transient")])
            .fails(1, &[&fix]);
        untouched.check();
    }
    chmod(&known_peers, 0o644);
    home.run(&["peers", "list"]).ok();

    let config = home.file("config.toml");
    fs::write(&config, "name = \"ada\"\n").unwrap();
    chmod(&config, 0o666);
    home.run(&["send", "127.0.0.1:1", "--accept-new"])
        .fails(1, &["0666", &format!("chmod 600 {}", config.display())]);
    chmod(&config, 0o644);
    home.run(&["send", "127.0.0.1:1", "--accept-new"])
        .fails(3, &["cannot connect"]);
}

#[test]
fn a_passphrase_file_others_can_read_is_refused() {
    let home = TestHome::empty();
    let pass = home.file("pass.txt");
    fs::write(&pass, "correct horse battery staple\n").unwrap();
    for mode in [0o644, 0o640, 0o604, 0o620] {
        chmod(&pass, mode);
        home.run(&[
            "init",
            "--bits",
            "2048",
            "--passphrase-file",
            pass.to_str().unwrap(),
        ])
        .fails(
            1,
            &[
                &format!("{mode:04o}"),
                &format!("chmod 600 {}", pass.display()),
            ],
        );
        assert!(!home.file("identity.pem").exists());
    }
    chmod(&pass, 0o400);
    home.run(&[
        "init",
        "--bits",
        "2048",
        "--passphrase-file",
        pass.to_str().unwrap(),
    ])
    .ok();
}

#[test]
fn state_owned_by_someone_else_is_refused() {
    if !is_root() {
        // Only root can give a file away; the unit tests in src/files.rs
        // cover the rule itself.
        eprintln!("skipped: needs root to chown");
        return;
    }
    let nobody = 65534;
    let home = home_with_peer();
    let chown = |path: &Path, uid: u32| std::os::unix::fs::chown(path, Some(uid), None).unwrap();
    let cases: [(std::path::PathBuf, &[&[&str]]); 3] = [
        (
            home.path().to_path_buf(),
            &[&["peers", "list"], &["fingerprint"]],
        ),
        (home.file("known_peers.toml"), &[&["peers", "list"]]),
        (home.file("identity.pem"), &[&["fingerprint"]]),
    ];
    for (path, commands) in cases {
        chown(&path, nobody);
        for args in commands {
            home.run(args)
                .fails(1, &["owned by user 65534", &path.display().to_string()]);
        }
        chown(&path, 0);
    }
    home.run(&["peers", "list"]).ok();
    home.run(&["fingerprint"]).ok();
}

#[test]
fn nothing_is_created_or_written_through_a_planted_link() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target");

    // The lock file of known_peers.toml, as a dangling link and as a link
    // to an existing file.
    let home = TestHome::with_identity("initiator");
    let lock = home.file("known_peers.toml.lock");
    symlink(&target, &lock).unwrap();
    home.run(&["peers", "add", "bob", &fingerprint_of("responder")])
        .fails(1, &[&lock.display().to_string(), "symbolic link"]);
    assert!(!target.exists(), "created through the link");
    assert!(!home.file("known_peers.toml").exists());
    fs::write(&target, "someone else's\n").unwrap();
    chmod(&target, 0o644);
    let untouched = Unchanged::watch(&target);
    home.run(&["peers", "add", "bob", &fingerprint_of("responder")])
        .fails(1, &["symbolic link"]);
    untouched.check();
    assert_eq!(
        fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o644
    );
    fs::remove_file(&target).unwrap();

    // The identity key, as a dangling link: `init` and the commands that
    // create an identity refuse rather than create the key through it.
    let home = TestHome::empty();
    let key = home.file("identity.pem");
    symlink(&target, &key).unwrap();
    home.run(&["init", "--bits", "2048"])
        .fails(1, &[&key.display().to_string(), "symbolic link"]);
    home.run(&["send", "127.0.0.1:1", "--accept-new"])
        .fails(1, &["symbolic link"]);
    assert!(!target.exists(), "a key was created through the link");

    // known_peers.toml itself as a link to a file elsewhere: an edit
    // replaces the link with a file of its own and leaves the other alone.
    let home = TestHome::with_identity("initiator");
    fs::write(&target, "").unwrap();
    chmod(&target, 0o600);
    let untouched = Unchanged::watch(&target);
    symlink(&target, home.file("known_peers.toml")).unwrap();
    home.run(&["peers", "add", "bob", &fingerprint_of("responder")])
        .ok();
    untouched.check();
    let store = fs::symlink_metadata(home.file("known_peers.toml")).unwrap();
    assert!(store.is_file(), "the link was replaced by a file");
}

#[test]
fn a_fifo_where_a_state_file_should_be_does_not_hang_chat() {
    for name in ["known_peers.toml", "known_peers.toml.lock"] {
        let home = TestHome::with_identity("initiator");
        let path = home.file(name);
        let status = Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(status.success());
        let mut command = home.chat();
        command.args(["peers", "add", "bob", &fingerprint_of("responder")]);
        let outcome = Running::spawn(command).finish(secs(10));
        outcome.fails(1, &[&path.display().to_string(), "not a regular file"]);
    }
}

#[test]
fn concurrent_identity_creation_keeps_exactly_one_key() {
    // Several processes find no identity and generate one at the same time
    // (`send` and `init` both do; RSA-3072 takes long enough for all of them
    // to overlap). Exactly one key is kept; every process that reports a
    // fingerprint reports that one; none is told to use --force.
    let home = TestHome::empty();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let target = format!("127.0.0.1:{port}");
    let mut children = Vec::new();
    for i in 0..6 {
        let mut command = home.chat();
        if i < 4 {
            command.args(["send", &target, "--accept-new"]);
        } else {
            command.args(["init", "--bits", "3072"]);
        }
        command.stdin(Stdio::piped());
        let mut running = Running::spawn(command);
        if i < 4 {
            use std::io::Write;
            running.stdin().write_all(b"hello\n").unwrap();
        }
        children.push((i < 4, running));
    }
    let outcomes: Vec<_> = children
        .into_iter()
        .map(|(sends, running)| (sends, running.finish(secs(60))))
        .collect();
    let mut names: Vec<_> = fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["identity.pem", "identity.pub"],
        "one key and its public half, no leftovers"
    );
    let on_disk = home.run(&["fingerprint"]).ok().trim().to_string();
    let mut created = 0;
    for (sends, outcome) in &outcomes {
        if *sends {
            let err = outcome.fails(3, &["cannot connect"]);
            assert!(!err.contains("--force"), "{err}");
            if err.contains("Created a new identity") {
                created += 1;
            }
            for line in err.lines().filter(|l| l.contains("identity")) {
                assert!(
                    line.contains(&on_disk),
                    "reports another key than {on_disk}: {line}"
                );
            }
        } else if outcome.code == Some(0) {
            created += 1;
            assert_eq!(outcome.stdout.trim(), on_disk, "{outcome:#?}");
        } else {
            // Lost the race, or started after the key was there.
            let err = outcome.fails(1, &[]);
            assert!(
                err.contains("by another chat process meanwhile") || err.contains("already exists"),
                "{err}"
            );
            // Never the advice that would destroy the winner's key.
            assert!(!err.contains("--force"), "{err}");
        }
    }
    assert_eq!(created, 1, "{outcomes:#?}");
}

#[test]
fn suggested_commands_repeat_the_home() {
    // --home, with a path that needs quoting.
    let root = TestHome::empty();
    let dir = root.file("my chat");
    let run = |args: &[&str]| {
        common::Outcome::of(
            Command::new(env!("CARGO_BIN_EXE_chat"))
                .arg("--home")
                .arg(&dir)
                .args(args)
                .env_remove("CHAT_HOME")
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    };
    let quoted = format!("'{}'", dir.display());
    run(&["fingerprint"]).fails(1, &[&format!("run `chat --home {quoted} init`")]);
    run(&["init", "--bits", "2048"]).ok();
    run(&["init", "--bits", "2048"]).fails(1, &[&format!("`chat --home {quoted} init --force`")]);
    run(&["peers", "forget", "nobody"]).fails(1, &[&format!("`chat --home {quoted} peers list`")]);

    // CHAT_HOME.
    let home = TestHome::empty();
    let outcome = common::Outcome::of(
        Command::new(env!("CARGO_BIN_EXE_chat"))
            .arg("fingerprint")
            .env("CHAT_HOME", home.path())
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    outcome.fails(
        1,
        &[&format!(
            "run `CHAT_HOME={} chat init`",
            home.path().display()
        )],
    );

    // The default folder needs nothing.
    let fake_home = TestHome::empty();
    let outcome = common::Outcome::of(
        Command::new(env!("CARGO_BIN_EXE_chat"))
            .arg("fingerprint")
            .env_remove("CHAT_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", fake_home.path())
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    outcome.fails(1, &["run `chat init`"]);

    // --strict's advice to pin the key, against a real peer.
    let bob = TestHome::with_identity("responder");
    let server = common::serve(&bob, &["--accept-new"], Stdio::null());
    let ada = TestHome::with_identity("initiator");
    ada.run(&["send", &format!("127.0.0.1:{}", server.port()), "--strict"])
        .fails(
            4,
            &[&format!(
                "`chat --home {} peers add NAME {}`",
                ada.path().display(),
                fingerprint_of("responder")
            )],
        );
}
