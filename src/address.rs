//! `HOST[:PORT]` as users type it and as `known_peers.toml` records it.

use std::fmt;
use std::str::FromStr;

/// The port `chat serve` listens on and `chat connect` dials by default.
pub const DEFAULT_PORT: u16 = 7777;

/// A host name or IP literal with a port. IPv6 literals are written in
/// brackets, `[::1]:7777`, as in URLs and ssh.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    host: String,
    port: u16,
}

/// Why a text is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed address {text:?}: expected HOST:PORT, e.g. example.org:7777 or [::1]:7777")]
pub struct ParseAddressError {
    text: String,
}

impl Address {
    /// Parses `HOST[:PORT]`, using `default_port` when the port is left out.
    pub fn parse_with_default_port(
        text: &str,
        default_port: u16,
    ) -> Result<Self, ParseAddressError> {
        let error = || ParseAddressError {
            text: text.chars().take(80).collect(),
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(error)?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(error());
            }
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(error)?)),
            }
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(error)?,
            Some(_) => return Err(error()),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !host_ok {
            return Err(error());
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    /// The host part, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for Address {
    type Err = ParseAddressError;

    /// Parses `HOST:PORT`; the port is required.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let address = Self::parse_with_default_port(text, 0)?;
        if address.port == 0 {
            return Err(ParseAddressError { text: text.into() });
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
            "[::1]7777",
            "host:1:2",
            "hö:1",
        ] {
            assert!(
                Address::parse_with_default_port(bad, 7777).is_err(),
                "accepted {bad:?}"
            );
        }
        assert!("host".parse::<Address>().is_err(), "port is required");
    }
}
