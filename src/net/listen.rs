//! Where `chat serve` listens (`--listen`/`-l`), and the addresses a peer
//! can use to reach it.
//!
//! `--listen` takes `PORT`, `:PORT`, `HOST:PORT` and `[V6]:PORT`. A port
//! alone means every address of the machine, IPv6 and IPv4 on one socket
//! (an IPv6 socket with `IPV6_V6ONLY` off); on a machine without IPv6 it
//! falls back to IPv4 alone and says so. The start-up lines then list the
//! machine's interface addresses (`getifaddrs`), loopback last.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::str::FromStr;

use socket2::{Domain, Socket, Type};

use crate::address::DEFAULT_PORT;

/// What `--listen` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `PORT` or `:PORT`: every address, IPv6 and IPv4.
    Everywhere(u16),
    /// `HOST:PORT` or `[V6]:PORT` with an IP address: exactly there.
    At(SocketAddr),
    /// `HOST:PORT` with a host name: its first address.
    Named(String, u16),
}

impl Default for Listen {
    fn default() -> Self {
        Listen::Everywhere(DEFAULT_PORT)
    }
}

/// Why a `--listen` value is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed listening address {0:?}: expected PORT, :PORT, HOST:PORT or [V6]:PORT, e.g. 7777, \
     127.0.0.1:7777 or [::1]:7777"
)]
pub struct ParseListenError(String);

fn port(text: &str) -> Option<u16> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

impl FromStr for Listen {
    type Err = ParseListenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseListenError(text.chars().take(80).collect());
        if let Some(port) = port(text.strip_prefix(':').unwrap_or(text)) {
            return Ok(Listen::Everywhere(port));
        }
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(error)?;
            let ip: Ipv6Addr = host.parse().map_err(|_| error())?;
            let port = after.strip_prefix(':').and_then(port).ok_or_else(error)?;
            return Ok(Listen::At(SocketAddr::new(IpAddr::V6(ip), port)));
        }
        let (host, port_text) = text.split_once(':').ok_or_else(error)?;
        let port = port(port_text).ok_or_else(error)?;
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(Listen::At(SocketAddr::new(IpAddr::V4(ip), port)));
        }
        let name = crate::address::canonical_host(host, false).map_err(|_| error())?;
        match name.parse::<IpAddr>() {
            Ok(ip) => Ok(Listen::At(SocketAddr::new(ip, port))),
            Err(_) => Ok(Listen::Named(name, port)),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Everywhere(port) => write!(f, "port {port}"),
            Listen::At(address) => write!(f, "{address}"),
            Listen::Named(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// Which families a listening socket takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Families {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
    /// IPv6 and IPv4 (IPv4 as mapped addresses).
    Both,
}

/// A listening socket and what it takes.
#[derive(Debug)]
pub struct Bound {
    /// The socket.
    pub listener: TcpListener,
    /// Where it is bound (with the port chosen, if 0 was asked).
    pub local: SocketAddr,
    /// Which families reach it.
    pub families: Families,
    /// Why it takes less than was asked (no IPv6 on this machine).
    pub fallback: Option<String>,
}

/// How many connections may wait to be accepted.
const BACKLOG: i32 = 128;

/// Binds a listening socket as `listen` asks.
pub fn bind(listen: &Listen) -> io::Result<Bound> {
    match listen {
        Listen::Everywhere(port) => match bind_dual_stack(*port) {
            Ok(bound) => Ok(bound),
            Err(e) if no_ipv6(&e) => {
                let mut bound = bind_one(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), *port))?;
                bound.fallback = Some(format!(
                    "this machine has no IPv6 ({e}): listening on IPv4 only"
                ));
                Ok(bound)
            }
            Err(e) => Err(e),
        },
        Listen::At(address) => bind_one(*address),
        Listen::Named(host, port) => {
            let address = (host.as_str(), *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other(format!("{host} has no address")))?;
            bind_one(address)
        }
    }
}

/// Whether an error says that the machine has no IPv6.
fn no_ipv6(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// One IPv6 socket on `[::]:port` that takes IPv4 too.
fn bind_dual_stack(port: u16) -> io::Result<Bound> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, None)?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())?;
    socket.listen(BACKLOG)?;
    let listener: TcpListener = socket.into();
    let local = listener.local_addr()?;
    Ok(Bound {
        listener,
        local,
        families: Families::Both,
        fallback: None,
    })
}

/// A socket on exactly `address` (as the system does it: `[::]` takes
/// IPv4 too unless the system says otherwise).
fn bind_one(address: SocketAddr) -> io::Result<Bound> {
    let listener = TcpListener::bind(address)?;
    let local = listener.local_addr()?;
    let families = match local {
        SocketAddr::V4(_) => Families::V4,
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            match socket2::SockRef::from(&listener).only_v6() {
                Ok(false) => Families::Both,
                _ => Families::V6,
            }
        }
        SocketAddr::V6(_) => Families::V6,
    };
    Ok(Bound {
        listener,
        local,
        families,
        fallback: None,
    })
}

impl Bound {
    /// The addresses a peer can dial: the bound one, or for a wildcard
    /// bind the machine's interface addresses of the families taken,
    /// IPv4 first, loopback last. IPv6 link-local addresses are left out
    /// (a peer would need the interface's name to use one).
    pub fn reachable(&self) -> Vec<SocketAddr> {
        if !self.local.ip().is_unspecified() {
            return vec![self.local];
        }
        let port = self.local.port();
        let mut ips = interface_addresses();
        ips.retain(|ip| match ip {
            IpAddr::V4(_) => self.families != Families::V6,
            IpAddr::V6(v6) => self.families != Families::V4 && !is_link_local(v6),
        });
        // Loopback last, IPv4 before IPv6, otherwise as the system lists them.
        ips.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
        ips.dedup();
        ips.into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect()
    }

    /// The start-up lines: where we listen, and every address a peer can
    /// use. The first line is `listening on ADDRESS`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!("listening on {}", self.local)];
        if let Some(fallback) = &self.fallback {
            lines.push(format!("Note: {fallback}."));
        }
        if self.local.ip().is_unspecified() {
            let which = match self.families {
                Families::V4 => "IPv4",
                Families::V6 => "IPv6",
                Families::Both => "IPv6 and IPv4",
            };
            let reachable = self.reachable();
            if reachable.is_empty() {
                lines.push(format!("({which}; no interface addresses found)"));
            } else {
                lines.push(format!("Peers can reach you ({which}) at:"));
                for address in reachable {
                    let local = if address.ip().is_loopback() {
                        "   (this machine only)"
                    } else {
                        ""
                    };
                    lines.push(format!("    {address}{local}"));
                }
            }
        }
        lines
    }
}

fn is_link_local(ip: &Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

/// The IP addresses of the machine's interfaces that are up; empty if they
/// cannot be read.
pub fn interface_addresses() -> Vec<IpAddr> {
    use nix::net::if_::InterfaceFlags;
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addresses
        .filter(|ifa| ifa.flags.contains(InterfaceFlags::IFF_UP))
        .filter_map(|ifa| {
            let address = ifa.address?;
            if let Some(v4) = address.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        let at = |text: &str| Listen::At(text.parse().unwrap());
        for (text, expected) in [
            ("7777", Listen::Everywhere(7777)),
            ("0", Listen::Everywhere(0)),
            (":7000", Listen::Everywhere(7000)),
            ("127.0.0.1:9", at("127.0.0.1:9")),
            ("0.0.0.0:9", at("0.0.0.0:9")),
            ("[::1]:9", at("[::1]:9")),
            ("[::]:0", at("[::]:0")),
            ("127.1:9", at("127.0.0.1:9")),
            ("LocalHost:9", Listen::Named("localhost".into(), 9)),
        ] {
            assert_eq!(text.parse::<Listen>(), Ok(expected), "{text}");
        }
        for bad in [
            "",
            ":",
            "x",
            "65536",
            ":-1",
            "::1:9",
            "[::1]",
            "[::1]9",
            "[x]:9",
            "host:",
            "a b:1",
            "1.2.3.4:99999",
        ] {
            assert!(bad.parse::<Listen>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn a_specific_address_is_the_only_one_listed() {
        let bound = bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(bound.families, Families::V4);
        assert_eq!(bound.reachable(), vec![bound.local]);
        let lines = bound.describe();
        assert_eq!(lines, vec![format!("listening on {}", bound.local)]);
    }

    #[test]
    fn a_wildcard_lists_interface_addresses_loopback_last() {
        let bound = bind(&Listen::Everywhere(0)).unwrap();
        let reachable = bound.reachable();
        let port = bound.local.port();
        assert!(
            reachable.contains(&SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)),
            "{reachable:?}"
        );
        let first_loopback = reachable.iter().position(|a| a.ip().is_loopback());
        assert!(
            reachable[first_loopback.unwrap()..]
                .iter()
                .all(|a| a.ip().is_loopback()),
            "loopback last: {reachable:?}"
        );
        assert!(reachable.iter().all(|a| a.port() == port));
    }
}
