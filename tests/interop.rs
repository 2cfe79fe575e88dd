//! An independent implementation, written from docs/PROTOCOL.md alone in
//! Python with the `cryptography` package, checks docs/vectors/: the spec is
//! complete enough to build a compatible peer from, and the vectors say what
//! the spec says. `.ci/run` installs `cryptography` if it is missing.

use std::path::Path;
use std::process::Command;

/// Runs `python3 SCRIPT ARGS...` from the repository's root and checks that
/// it succeeded, printed `done` (its summary line) and at least `at_least`
/// `PASS` lines.
fn python_checker(script: &str, args: &[&str], done: &str, at_least: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("python3")
        .arg(root.join(script))
        .args(args)
        .current_dir(root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs (install Python 3 and `pip install cryptography`)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(done), "{stdout}");
    let passed = stdout.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(passed >= at_least, "only {passed} checks ran");
}

#[test]
fn python_implementation_of_the_spec_accepts_the_vectors() {
    python_checker(
        "tests/interop/check_vectors.py",
        &["docs/vectors"],
        "all checks passed",
        301,
    );
}

/// A second independent implementation, `peer_v2.py`, written from the v2
/// spec alone by someone who never read the code: it reproduces every frame
/// of the vector session in both roles (see tests/interop/peer_v2-notes.md
/// for what it had to guess).
#[test]
fn a_second_implementation_from_the_spec_alone_reproduces_the_vector_session() {
    python_checker(
        "tests/interop/peer_v2.py",
        &["check"],
        " passed, 0 failed",
        301,
    );
}

#[test]
fn python_reading_of_the_relay_spec_accepts_the_relay_vectors() {
    python_checker(
        "tests/interop/check_relay.py",
        &["docs/vectors"],
        "all checks passed",
        20,
    );
}
