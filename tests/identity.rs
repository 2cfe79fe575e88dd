//! `chat init` and loading the identity, through the binary.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{TestHome, Unchanged};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Writes a file only its owner may read, as a passphrase file must be.
fn private_file(path: &std::path::Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn init_creates_a_private_home_and_key() {
    let root = TestHome::empty();
    let home = root.file("nested/state");
    let out = common::Outcome::of(
        std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
            .args(["init", "--bits", "2048", "--home"])
            .arg(&home)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap(),
    );
    let fingerprint = out.ok().trim().to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{out:?}");
    assert_eq!(mode(&home), 0o700);
    let key_path = home.join("identity.pem");
    assert_eq!(mode(&key_path), 0o600);
    let pem = fs::read_to_string(&key_path).unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "PKCS#8 PEM"
    );
    let key = rsa::PrivateKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(key.n().bit_width(), 2048);
    // No temporary files are left in the folder.
    let mut names: Vec<_> = fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["identity.pem", "identity.pub"]);
    assert_eq!(mode(&home.join("identity.pub")), 0o600);
}

#[test]
fn init_default_is_3072_bits() {
    let home = TestHome::empty();
    home.run(&["init"]).ok();
    let pem = fs::read_to_string(home.file("identity.pem")).unwrap();
    let key = rsa::PrivateKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(key.n().bit_width(), 3072);
}

#[test]
fn init_refuses_small_or_odd_sizes() {
    let home = TestHome::empty();
    for bits in ["1024", "2047", "8192", "lots"] {
        home.run(&["init", "--bits", bits])
            .fails(2, &["2048, 3072 or 4096"]);
    }
    assert!(!home.file("identity.pem").exists());
}

#[test]
fn init_refuses_to_overwrite_and_force_keeps_the_old_key() {
    let home = TestHome::with_identity("initiator");
    let original = Unchanged::watch(home.file("identity.pem"));
    home.run(&["init", "--bits", "2048"])
        .fails(1, &["already exists", "--force"]);
    original.check();

    let before = home.run(&["fingerprint"]).ok().to_string();
    let after = home
        .run(&["init", "--bits", "2048", "--force"])
        .ok()
        .to_string();
    assert_ne!(before, after);
    assert_eq!(home.run(&["fingerprint"]).ok(), after);
    assert_eq!(
        fs::read(home.file("identity.pem.old")).unwrap(),
        fs::read(common::fixture_key("initiator")).unwrap()
    );
    assert_eq!(mode(&home.file("identity.pem.old")), 0o600);
}

#[test]
fn passphrase_protected_identity() {
    let home = TestHome::empty();
    let pass = home.file("pass.txt");
    private_file(&pass, "correct horse battery staple\n");
    let pass = pass.to_str().unwrap();
    let created = home
        .run(&["init", "--bits", "2048", "--passphrase-file", pass])
        .ok()
        .to_string();
    let key_file = home.file("identity.pem");
    let pem = fs::read_to_string(&key_file).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
    assert!(!pem.contains("correct horse"));
    let untouched = Unchanged::watch(&key_file);

    assert_eq!(
        home.run(&["fingerprint", "--passphrase-file", pass]).ok(),
        created
    );
    // No terminal and no passphrase file: identity.pub answers.
    assert_eq!(home.run(&["fingerprint"]).ok(), created);
    // Without it, say how to give the passphrase.
    fs::remove_file(home.file("identity.pub")).unwrap();
    home.run(&["fingerprint"])
        .fails(1, &["protected by a passphrase", "--passphrase-file"]);
    let wrong = home.file("wrong.txt");
    private_file(&wrong, "incorrect horse\n");
    home.run(&["fingerprint", "--passphrase-file", wrong.to_str().unwrap()])
        .fails(1, &["identity.pem", "wrong passphrase"]);
    let empty = home.file("empty.txt");
    private_file(&empty, "\n");
    home.run(&["fingerprint", "--passphrase-file", empty.to_str().unwrap()])
        .fails(1, &["empty"]);
    untouched.check();
}

#[test]
fn refuses_keys_readable_by_others_and_leaves_them_alone() {
    let home = TestHome::with_identity("initiator");
    let key = home.file("identity.pem");
    for bits in [0o644, 0o640, 0o604, 0o660, 0o602] {
        fs::set_permissions(&key, fs::Permissions::from_mode(bits)).unwrap();
        let untouched = Unchanged::watch(&key);
        let shown = format!("{bits:04o}");
        home.run(&["fingerprint"]).fails(
            1,
            &[&shown, "too open", &format!("chmod 600 {}", key.display())],
        );
        untouched.check();
        assert_eq!(mode(&key), bits, "permissions are not changed for the user");
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();
    home.run(&["fingerprint"]).ok();
}

#[test]
fn reports_corrupt_key_files_and_leaves_them_alone() {
    let valid = fs::read_to_string(common::fixture_key("initiator")).unwrap();
    let truncated = &valid[..valid.len() / 2];
    let mut flipped = valid.clone().into_bytes();
    flipped[100] = if flipped[100] == b'A' { b'B' } else { b'A' };
    let public_pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    let cases: [(&str, &[u8], &str); 6] = [
        ("empty", b"", "not a valid RSA key"),
        ("garbage", b"hello, world\n", "not a valid RSA key"),
        ("truncated", truncated.as_bytes(), "not a valid RSA key"),
        ("bit flip", &flipped, "not a valid RSA key"),
        ("public key", public_pem.as_bytes(), "PKCS#8"),
        ("binary", &[0xff, 0xfe, 0x00, 0x80], "not a PEM text file"),
    ];
    for (what, bytes, needle) in cases {
        let home = TestHome::empty();
        let key = home.file("identity.pem");
        fs::write(&key, bytes).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let untouched = Unchanged::watch(&key);
        let err = home
            .run(&["fingerprint"])
            .fails(1, &["identity.pem", needle])
            .to_string();
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        untouched.check();
    }
}

#[test]
fn missing_identity_says_how_to_create_one() {
    let home = TestHome::empty();
    let init = format!("chat --home {} init", home.path().display());
    home.run(&["fingerprint"]).fails(1, &["no identity", &init]);
    assert!(!home.file("identity.pem").exists());
}

#[test]
fn read_only_home_reports_and_keeps_the_identity() {
    let home = TestHome::with_identity("initiator");
    let untouched = Unchanged::watch(home.file("identity.pem"));
    home.run_read_only(&["fingerprint"]).ok();
    home.run_read_only(&["init", "--bits", "2048", "--force"])
        .fails(1, &["Read-only file system"]);
    untouched.check();
    assert!(!home.file("identity.pem.old").exists());
}

#[test]
fn fingerprint_pem_is_the_public_key() {
    let home = TestHome::with_identity("responder");
    let pem = home.run(&["fingerprint", "--pem"]).ok().to_string();
    let key = rsa::PrivateKey::from_pkcs8_pem(
        &fs::read_to_string(common::fixture_key("responder")).unwrap(),
    )
    .unwrap();
    let expected = key
        .to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    assert_eq!(pem, expected);
}
