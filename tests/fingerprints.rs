//! Fingerprints and safety numbers: the documented vectors, and the binary's
//! output checked against an independent computation.

use crate::common;

use std::fs;
use std::path::Path;

use base64ct::{Base64, Base64Unpadded, Encoding};
use chat::crypto::{PrivateKey, SafetyNumber};
use common::TestHome;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use sha2::{Digest, Sha256};

fn vectors() -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/vectors/fingerprints.toml");
    fs::read_to_string(path).unwrap().parse().unwrap()
}

fn load_key(relative: &str) -> PrivateKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/vectors")
        .join(relative);
    let pem = fs::read_to_string(path).unwrap();
    PrivateKey::from_pkcs8_pem(&pem, || -> Result<_, ()> { unreachable!() })
        .unwrap()
        .unwrap()
}

/// The fingerprint computed here with `rsa`, `sha2` and `base64ct` directly.
fn independent_fingerprint(pem_path: &Path) -> String {
    let key = rsa::PrivateKey::from_pkcs8_pem(&fs::read_to_string(pem_path).unwrap()).unwrap();
    let der = key.to_public_key().to_public_key_der().unwrap();
    format!(
        "SHA256:{}",
        Base64Unpadded::encode_string(&Sha256::digest(der.as_bytes()))
    )
}

#[test]
fn documented_fingerprints_match() {
    for key in vectors()["key"].as_array().unwrap() {
        let file = key["file"].as_str().unwrap();
        let expected = key["fingerprint"].as_str().unwrap();
        assert_eq!(
            load_key(file).public().fingerprint().to_string(),
            expected,
            "{file}"
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/vectors")
            .join(file);
        assert_eq!(independent_fingerprint(&path), expected, "{file}");
    }
}

#[test]
fn binary_prints_the_independently_computed_fingerprint() {
    for name in ["initiator", "responder"] {
        let home = TestHome::with_identity(name);
        let printed = home.run(&["fingerprint"]).ok().to_string();
        assert_eq!(
            printed,
            format!("{}\n", independent_fingerprint(&common::fixture_key(name)))
        );

        // And the PEM it prints hashes to the same fingerprint.
        let pem = home.run(&["fingerprint", "--pem"]).ok().to_string();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = Base64::decode_vec(&body).unwrap();
        let from_pem = format!(
            "SHA256:{}",
            Base64Unpadded::encode_string(&Sha256::digest(&der))
        );
        assert_eq!(printed.trim(), from_pem);
    }
}

#[test]
fn freshly_generated_key_fingerprint_is_independent_too() {
    let home = TestHome::empty();
    let printed = home.run(&["init", "--bits", "2048"]).ok().to_string();
    assert_eq!(
        printed.trim(),
        independent_fingerprint(&home.file("identity.pem"))
    );
}

#[test]
fn safety_number_matches_the_vector_from_both_sides() {
    let vectors = vectors();
    let sn = vectors["safety_number"].as_table().unwrap();
    let files = sn["keys"].as_array().unwrap();
    let a = load_key(files[0].as_str().unwrap());
    let b = load_key(files[1].as_str().unwrap());
    let from_a = SafetyNumber::new(a.public(), b.public());
    let from_b = SafetyNumber::new(b.public(), a.public());
    assert_eq!(from_a, from_b);
    assert_eq!(from_a.digits(), sn["digits"].as_str().unwrap());
    assert_eq!(from_a.to_string(), sn["display"].as_str().unwrap());
}
