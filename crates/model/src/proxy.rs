//! Which address a request came from, behind proxies: one rule for the client library's audit
//! layer (the `context.ip` it records) and the server's rate limits (whose bucket a request
//! fills), so both believe the same proxies.
//!
//! The peer address is the client unless the peer is a trusted proxy; then the first untrusted
//! hop of `X-Forwarded-For` (else of `Forwarded`'s `for=`), read from the right, is. Headers from
//! an untrusted peer are never believed: anyone can send them.

use std::net::{IpAddr, SocketAddr};

pub use ipnet::IpNet;

/// The client's address. `x_forwarded_for` and `forwarded` are the headers' values, if sent.
pub fn client_ip(
    peer: Option<IpAddr>,
    x_forwarded_for: Option<&str>,
    forwarded: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = if let Some(xff) = x_forwarded_for {
        xff.split(',').filter_map(|h| parse_hop(h.trim())).collect()
    } else if let Some(fwd) = forwarded {
        fwd.split(',')
            .flat_map(|e| e.split(';'))
            .filter_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.eq_ignore_ascii_case("for").then(|| v.trim_matches('"'))
            })
            .filter_map(parse_hop)
            .collect()
    } else {
        Vec::new()
    };
    Some(
        hops.iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer),
    )
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80` or `::1`.
fn parse_hop(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    text.strip_prefix('[')
        .and_then(|t| t.split(']').next())
        .and_then(|t| t.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        /// Peer, X-Forwarded-For, Forwarded, the client address expected.
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str);
        let cases: &[Case<'_>] = &[
            // An untrusted peer's header is ignored.
            ("203.0.113.9", Some("1.1.1.1"), None, "203.0.113.9"),
            // A trusted proxy: the first untrusted hop from the right.
            (
                "10.0.0.2",
                Some("6.6.6.6, 198.51.100.7, 10.0.0.5"),
                None,
                "198.51.100.7",
            ),
            (
                "10.0.0.2",
                None,
                Some("for=\"[2001:db8::1]:4711\";proto=https"),
                "2001:db8::1",
            ),
            ("10.0.0.2", None, None, "10.0.0.2"),
            ("10.0.0.2", Some("10.1.1.1, 10.2.2.2"), None, "10.1.1.1"),
            ("10.0.0.2", Some("garbage, 1.2.3.4:99"), None, "1.2.3.4"),
        ];
        for (peer, xff, fwd, want) in cases {
            let got = client_ip(Some(ip(peer)), *xff, *fwd, &trusted);
            assert_eq!(got, Some(ip(want)), "{peer} {xff:?} {fwd:?}");
        }
        assert_eq!(client_ip(None, Some("1.1.1.1"), None, &trusted), None);
    }
}
