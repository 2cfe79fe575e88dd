//! An independent implementation, written from docs/PROTOCOL.md alone in
//! Python with the `cryptography` package, checks docs/vectors/: the spec is
//! complete enough to build a compatible peer from, and the vectors say what
//! the spec says. `.ci/run` installs `cryptography` if it is missing.

use std::path::Path;
use std::process::Command;

#[test]
fn python_implementation_of_the_spec_accepts_the_vectors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("python3")
        .arg(root.join("tests/interop/check_vectors.py"))
        .arg(root.join("docs/vectors"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs (install Python 3 and `pip install cryptography`)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the independent checker failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    let passed = stdout.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(passed > 300, "only {passed} checks ran");
}

/// A second independent implementation, `peer_v2.py`, written from the v2
/// spec alone by someone who never read the code: it reproduces every frame
/// of the vector session in both roles (see tests/interop/peer_v2-notes.md
/// for what it had to guess).
#[test]
fn a_second_implementation_from_the_spec_alone_reproduces_the_vector_session() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("python3")
        .arg(root.join("tests/interop/peer_v2.py"))
        .arg("check")
        .current_dir(root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs (install Python 3 and `pip install cryptography`)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "peer_v2.py check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let passed = stdout.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(passed > 300, "only {passed} checks ran");
}

#[test]
fn python_reading_of_the_relay_spec_accepts_the_relay_vectors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("python3")
        .arg(root.join("tests/interop/check_relay.py"))
        .arg(root.join("docs/vectors"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the relay checker failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    let passed = stdout.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(passed >= 20, "only {passed} checks ran");
}
