//! `chat peers list|add|forget` and the known-peers file, through the binary.

use crate::common;

use std::fs;

use common::{TestHome, Unchanged};

const FP_A: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
const FP_B: &str = "SHA256:OWsDce7mDnasf/dtSF7pWeZNAUlE5amfGsXq+XrOVs8";

#[test]
fn add_list_forget() {
    let home = TestHome::empty();
    let empty_list = home.run(&["peers", "list"]);
    assert_eq!(empty_list.ok(), "");
    assert!(empty_list.stderr.contains("No known peers"));

    home.run(&["peers", "add", "bob", FP_A, "--address", "bob.example:7777"])
        .ok();
    home.run(&[
        "peers",
        "add",
        "carol",
        FP_B,
        "--comment",
        "from the conference",
    ])
    .ok();
    let list = home.run(&["peers", "list"]).ok().to_string();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("NAME"));
    assert!(
        lines[1].starts_with("bob ")
            && lines[1].contains(FP_A)
            && lines[1].contains("bob.example:7777")
    );
    assert!(lines[2].starts_with("carol ") && lines[2].contains(FP_B));
    let year = lines[1].split_whitespace().nth(2).unwrap();
    assert!(
        year.starts_with("20") && year.ends_with('Z'),
        "added column: {year}"
    );

    let text = fs::read_to_string(home.file("known_peers.toml")).unwrap();
    assert!(text.contains("comment = \"from the conference\""), "{text}");

    home.run(&["peers", "forget", "bob"]).ok();
    let list = home.run(&["peers", "list"]).ok().to_string();
    assert!(!list.contains("bob") && list.contains("carol"), "{list}");
}

#[test]
fn clear_errors_leave_the_file_unchanged() {
    let home = TestHome::empty();
    home.run(&["peers", "add", "bob", FP_A]).ok();
    let file = Unchanged::watch(home.file("known_peers.toml"));
    home.run(&["peers", "add", "bob", FP_B])
        .fails(1, &["\"bob\" is already pinned"]);
    home.run(&["peers", "add", "robert", FP_A])
        .fails(1, &["already pinned as \"bob\""]);
    home.run(&["peers", "forget", "alice"])
        .fails(1, &["no known peer is named \"alice\""]);
    home.run(&["peers", "add", "b o b", FP_B])
        .fails(1, &["invalid peer name"]);
    home.run(&["peers", "add", "carol", FP_B, "--address", "nowhere"])
        .fails(2, &["malformed address"]);
    for bad in [
        "SHA256:abc",
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "MD5:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF!",
    ] {
        home.run(&["peers", "add", "carol", bad])
            .fails(2, &["malformed fingerprint"]);
    }
    file.check();
}

/// Every way the file can be bad: a clear error with file and line, for both
/// reading and editing commands, and the bytes stay exactly as they were.
#[test]
fn corrupt_files_are_reported_and_never_rewritten() {
    let entry = format!(
        "[[peer]]\nname = \"bob\"\nfingerprint = \"{FP_A}\"\nadded = 2026-01-01T00:00:00Z\n"
    );
    let truncated = &entry[..entry.len() - 12];
    let duplicate = format!("{entry}\n{entry}");
    let same_key = format!("{entry}\n{}", entry.replace("\"bob\"", "\"robert\""));
    let bad_fp = entry.replace(FP_A, "SHA256:xyz");
    let unknown_key = entry.replace("added", "adedd");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            truncated.as_bytes().to_vec(),
            "known_peers.toml:4:",
        ),
        (
            "garbage",
            b"this is not toml\n".to_vec(),
            "known_peers.toml:1:",
        ),
        (
            "duplicate name",
            duplicate.into_bytes(),
            "known_peers.toml:7: name \"bob\" is used twice (also on line 1)",
        ),
        (
            "same key twice",
            same_key.into_bytes(),
            "known_peers.toml:8: key",
        ),
        (
            "bad fingerprint",
            bad_fp.into_bytes(),
            "known_peers.toml:3: malformed fingerprint",
        ),
        (
            "unknown key",
            unknown_key.into_bytes(),
            "known_peers.toml:4: unknown field `adedd`",
        ),
        (
            "not UTF-8",
            b"# caf\xe9\n".to_vec(),
            "known_peers.toml:1: not UTF-8",
        ),
    ];
    for (what, bytes, needle) in cases {
        let home = TestHome::empty();
        let path = home.file("known_peers.toml");
        fs::write(&path, &bytes).unwrap();
        let file = Unchanged::watch(&path);
        let err = home.run(&["peers", "list"]).fails(1, &[needle]).to_string();
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        home.run(&["peers", "add", "zed", FP_B]).fails(1, &[needle]);
        home.run(&["peers", "forget", "bob"]).fails(1, &[needle]);
        file.check();
    }
}

#[test]
fn file_without_trailing_newline_is_extended_cleanly() {
    let home = TestHome::empty();
    let path = home.file("known_peers.toml");
    let original = format!(
        "# hand-written\n[[peer]]\nname = \"bob\"\nfingerprint = \"{FP_A}\"\nadded = 2026-01-01T00:00:00Z"
    );
    fs::write(&path, &original).unwrap();
    home.run(&["peers", "add", "carol", FP_B]).ok();
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with(&original),
        "the user's text is kept: {text}"
    );
    assert!(text.ends_with('\n'));
    let list = home.run(&["peers", "list"]).ok().to_string();
    assert!(list.contains("bob") && list.contains("carol"), "{list}");
}

#[test]
fn read_only_home_reports_and_keeps_the_file() {
    let home = TestHome::empty();
    home.run(&["peers", "add", "bob", FP_A]).ok();
    let file = Unchanged::watch(home.file("known_peers.toml"));
    home.run_read_only(&["peers", "list"]).ok();
    home.run_read_only(&["peers", "add", "carol", FP_B])
        .fails(1, &["Read-only file system"]);
    home.run_read_only(&["peers", "forget", "bob"])
        .fails(1, &["Read-only file system"]);
    file.check();
}

#[test]
fn concurrent_adds_lose_nothing() {
    let home = TestHome::empty();
    let children: Vec<_> = (0..12)
        .map(|i| {
            let fp = format!("SHA256:{}", &base64_of(i)[..43]);
            home.chat()
                .args(["peers", "add", &format!("peer{i}"), &fp])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = home.run(&["peers", "list"]).ok().to_string();
    assert_eq!(list.lines().count(), 13, "{list}");
}

/// 43 characters of canonical unpadded base64 of a 32-byte value derived from `i`.
fn base64_of(i: u8) -> String {
    use base64ct::{Base64Unpadded, Encoding};
    use sha2::Digest;
    Base64Unpadded::encode_string(&sha2::Sha256::digest([i]))
}

#[test]
fn the_example_file_is_valid() {
    let home = TestHome::empty();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("known_peers.example.toml");
    fs::copy(example, home.file("known_peers.toml")).unwrap();
    let list = home.run(&["peers", "list"]).ok().to_string();
    assert!(
        list.contains("alice") && list.contains("[2001:db8::17]:7777") && list.contains("bob"),
        "{list}"
    );
}
