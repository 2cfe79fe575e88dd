//! `HOST[:PORT]` as users type it and as `known_peers.toml` records it.
//!
//! An [`Address`] holds one canonical form, made by [`canonical_host`] when
//! it is parsed: the same function serves the addresses a user dials and the
//! ones read back from `known_peers.toml`, so two spellings of one place
//! (`LOCALHOST:7777`, `127.1:7777`, `0x7f.0.0.1:7777`, `localhost.:7777`)
//! are one address, in a pin as in a comparison. We also dial the canonical
//! form, so what is compared is what is reached. The rules are in
//! `docs/FILES.md`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The port `chat serve` listens on and `chat connect` dials by default.
pub const DEFAULT_PORT: u16 = 7777;

/// Longest host name, in bytes (RFC 1035).
const MAX_HOST_BYTES: usize = 253;

/// Longest label of a host name, in bytes (RFC 1035).
const MAX_LABEL_BYTES: usize = 63;

/// A host in canonical form with a port. IPv6 literals are written in
/// brackets, `[::1]:7777`, as in URLs and ssh.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    host: String,
    port: u16,
}

/// Why a text is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed address {text:?}: {problem}")]
pub struct ParseAddressError {
    text: String,
    problem: &'static str,
}

const EXPECTED: &str = "expected HOST:PORT, e.g. example.org:7777 or [::1]:7777";

impl Address {
    /// Parses `HOST[:PORT]`, using `default_port` when the port is left out.
    pub fn parse_with_default_port(
        text: &str,
        default_port: u16,
    ) -> Result<Self, ParseAddressError> {
        let error = |problem| ParseAddressError {
            text: text.chars().take(80).collect(),
            problem,
        };
        let (host, bracketed, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| error(EXPECTED))?;
            match after {
                "" => (host, true, None),
                _ => (
                    host,
                    true,
                    Some(after.strip_prefix(':').ok_or_else(|| error(EXPECTED))?),
                ),
            }
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host, false, Some(port)),
                None => (text, false, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| error("the port must be 1 to 65535"))?,
            Some(_) => return Err(error(EXPECTED)),
        };
        let host = canonical_host(host, bracketed).map_err(error)?;
        Ok(Self { host, port })
    }

    /// The host part in canonical form, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The same host at `port` (`-p PORT`).
    #[must_use]
    pub fn with_port(&self, port: u16) -> Self {
        Self {
            host: self.host.clone(),
            port,
        }
    }
}

/// The canonical form of a host as typed (`bracketed`: it was written in
/// `[...]`, which only IPv6 literals are):
///
/// * an IPv6 literal in its RFC 5952 form (lower case, the longest run of
///   zeros compressed); an IPv4-mapped one (`::ffff:127.0.0.1`) as the IPv4
///   address it reaches;
/// * a host whose last label is a number is an IPv4 address as the C
///   library's `inet_aton` (and so `getaddrinfo`) reads it: one to four
///   parts, each decimal, octal (`0` first) or hexadecimal (`0x` first),
///   the last filling the remaining bytes (`127.1`, `0x7f.1`, `2130706433`
///   are all `127.0.0.1`), written as four decimal parts; one that is not a
///   valid address (`256.1.1.1`, `1.2.3.4.5`, `08.1`, `example.123`) is
///   refused, never compared as text;
/// * a host name in lower case without its trailing dot: 1 to 253 bytes of
///   ASCII letters, digits, `-` and `_`, in dot-separated labels of 1 to 63.
pub fn canonical_host(host: &str, bracketed: bool) -> Result<String, &'static str> {
    if bracketed {
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| "only an IPv6 address may be written in brackets")?;
        return Ok(match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => ip.to_string(),
        });
    }
    if host.contains(':') {
        return Err("write an IPv6 address in brackets, e.g. [::1]:7777");
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Err("the host is empty");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("a host name is ASCII letters, digits, '-', '_' and '.'");
    }
    if name.len() > MAX_HOST_BYTES {
        return Err("a host name is at most 253 bytes");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.iter().any(|label| label.is_empty()) {
        return Err("a host name has no empty labels");
    }
    if labels.iter().any(|label| label.len() > MAX_LABEL_BYTES) {
        return Err("a label of a host name is at most 63 bytes");
    }
    let last = labels.last().expect("split yields one label at least");
    if is_number(last) {
        return inet_aton(&labels)
            .map(|ip| ip.to_string())
            .ok_or("the host ends in a number but is not a valid IPv4 address");
    }
    Ok(name.to_ascii_lowercase())
}

/// Whether a label is a number in `inet_aton`'s sense: decimal digits, or
/// `0x` and hexadecimal digits. A name whose last label is one is read as
/// an IPv4 address, as the WHATWG URL standard does.
fn is_number(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The IPv4 address of one to four dot-separated parts, as glibc's
/// `inet_aton` reads them; `None` where it would refuse, and also for
/// `0x` without digits, which implementations disagree about.
fn inet_aton(parts: &[&str]) -> Option<Ipv4Addr> {
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let values: Vec<u64> = parts
        .iter()
        .map(|part| part_value(part))
        .collect::<Option<_>>()?;
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|&v| v > 0xff) {
        return None;
    }
    // The last part fills the bytes the others leave: 32 bits for one part,
    // 24 after one, 16 after two, 8 after three.
    let last_bits = 8 * (5 - values.len()) as u32;
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut address: u64 = 0;
    for (i, &v) in leading.iter().enumerate() {
        address |= v << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from((address | last) as u32))
}

/// One part of an `inet_aton` address; `None` if malformed or over 32 bits.
fn part_value(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|&v| v <= u64::from(u32::MAX))
}

impl FromStr for Address {
    type Err = ParseAddressError;

    /// Parses `HOST:PORT`; the port is required.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let address = Self::parse_with_default_port(text, 0)?;
        if address.port == 0 {
            return Err(ParseAddressError {
                text: text.chars().take(80).collect(),
                problem: "the port is missing (HOST:PORT)",
            });
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        Address::parse_with_default_port(text, 7777)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string()
    }

    #[test]
    fn parses_hosts_ports_and_ipv6() {
        let a = Address::parse_with_default_port("example.org", 7777).unwrap();
        assert_eq!(a.to_string(), "example.org:7777");
        let a = Address::parse_with_default_port("127.0.0.1:9", 7777).unwrap();
        assert_eq!((a.host(), a.port()), ("127.0.0.1", 9));
        let a = Address::parse_with_default_port("[::1]", 7777).unwrap();
        assert_eq!(a.to_string(), "[::1]:7777");
        let a: Address = "[::1]:8".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("::1", 8));
    }

    #[test]
    fn one_place_has_one_form() {
        for (typed, expected) in [
            ("LOCALHOST", "localhost:7777"),
            ("localhost.", "localhost:7777"),
            ("LocalHost.:7777", "localhost:7777"),
            ("Bob.Example.ORG.:9", "bob.example.org:9"),
            ("under_score.example", "under_score.example:7777"),
            ("127.0.0.1", "127.0.0.1:7777"),
            ("127.1", "127.0.0.1:7777"),
            ("127.0.1", "127.0.0.1:7777"),
            ("0x7f.1", "127.0.0.1:7777"),
            ("0X7F.0.0.1", "127.0.0.1:7777"),
            ("0177.0.0.1", "127.0.0.1:7777"),
            ("127.0.0.01", "127.0.0.1:7777"),
            ("2130706433", "127.0.0.1:7777"),
            ("0x7f000001", "127.0.0.1:7777"),
            ("017700000001", "127.0.0.1:7777"),
            ("127.0.0.1.", "127.0.0.1:7777"),
            ("10.258", "10.0.1.2:7777"),
            ("1.2.65535", "1.2.255.255:7777"),
            ("0", "0.0.0.0:7777"),
            ("4294967295", "255.255.255.255:7777"),
            ("[::1]", "[::1]:7777"),
            ("[0:0:0:0:0:0:0:1]:5", "[::1]:5"),
            ("[2001:DB8:0:0:1:0:0:1]", "[2001:db8::1:0:0:1]:7777"),
            ("[2001:0db8::0001]", "[2001:db8::1]:7777"),
            ("[::ffff:127.0.0.1]", "127.0.0.1:7777"),
            ("[::FFFF:7f00:1]:3", "127.0.0.1:3"),
        ] {
            assert_eq!(canonical(typed), expected, "{typed}");
        }
        // The canonical form parses to itself.
        for text in [
            "localhost:1",
            "127.0.0.1:1",
            "[::1]:1",
            "[2001:db8::1:0:0:1]:1",
        ] {
            assert_eq!(canonical(text), text);
        }
        let a: Address = "LOCALHOST:1".parse().unwrap();
        let b: Address = "localhost.:1".parse().unwrap();
        assert_eq!(a, b);
        let a: Address = "127.1:1".parse().unwrap();
        let b: Address = "127.0.0.1:1".parse().unwrap();
        assert_eq!(a, b);
    }

    unsafe extern "C" {
        fn inet_aton(cp: *const std::ffi::c_char, inp: *mut u32) -> i32;
    }

    /// The address the C library's `inet_aton` reads in `text`, if any.
    fn libc_reads(text: &str) -> Option<Ipv4Addr> {
        let c = std::ffi::CString::new(text).unwrap();
        let mut out = 0u32;
        // SAFETY: a NUL-terminated string and a valid out pointer.
        let ok = unsafe { inet_aton(c.as_ptr(), &mut out) };
        (ok != 0).then(|| Ipv4Addr::from(u32::from_be(out)))
    }

    proptest::proptest! {
        /// Whatever we read as an IPv4 address, the C library reads as the
        /// same address; and the canonical form reads back as itself.
        #[test]
        fn numeric_hosts_agree_with_the_c_library(text in "[0-9a-fxX.]{1,24}") {
            if let Ok(host) = canonical_host(&text, false) {
                proptest::prop_assert_eq!(canonical_host(&host, false), Ok(host.clone()));
                let last = text.strip_suffix('.').unwrap_or(&text).rsplit('.').next().unwrap();
                if is_number(last) && !text.ends_with('.') {
                    let ip: Ipv4Addr = host.parse().unwrap();
                    proptest::prop_assert_eq!(libc_reads(&text), Some(ip), "{}", text);
                }
            }
        }
    }

    /// Our reading of the odd IPv4 forms agrees with the C library's, which
    /// is what `getaddrinfo` would dial.
    #[test]
    fn odd_ipv4_forms_read_as_the_c_library_reads_them() {
        for text in [
            "127.1",
            "0x7f.1",
            "2130706433",
            "0177.0.0.1",
            "127.0.0.01",
            "10.258",
            "1.2.65535",
            "0",
            "00",
            "0x0",
            "4294967295",
            "255.255.255.255",
            "1.2.3.4",
            "0xff.0xff.0xffff",
            "08",
            "09.1",
            "256.1.1.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "1.2.3.4.5",
            "0xfffffffff",
            "1.16777216",
            "0x1.0x1000000",
        ] {
            let ours = canonical_host(text, false).ok();
            let theirs = libc_reads(text).map(|ip| ip.to_string());
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            ":7777",
            "host:",
            "host:0",
            "host:65536",
            "host:-1",
            "host:+1",
            "a b:1",
            "::1:7777",
            "[::1",
            "[x]:1",
            "[127.0.0.1]:1",
            "[::1]7777",
            "host:1:2",
            "hö:1",
            ".",
            "..:1",
            "a..b:1",
            ".a:1",
            "a.b..:1",
            "256.1.1.1",
            "1.2.3.4.5",
            "08.1.1.1",
            "0x:1",
            "0x.1",
            "example.123",
            "example.0x1",
            "4294967296",
            "[fe80::1%eth0]:1",
        ] {
            assert!(
                Address::parse_with_default_port(bad, 7777).is_err(),
                "accepted {bad:?}"
            );
        }
        assert!("host".parse::<Address>().is_err(), "port is required");
        let long_label = format!("{}.org", "a".repeat(64));
        assert!(Address::parse_with_default_port(&long_label, 1).is_err());
        let long_name = format!("{}a", "a.".repeat(127));
        assert!(Address::parse_with_default_port(&long_name, 1).is_err());
        let err = Address::parse_with_default_port("256.1.1.1:7", 1).unwrap_err();
        assert!(
            err.to_string().contains("not a valid IPv4 address"),
            "{err}"
        );
    }
}
