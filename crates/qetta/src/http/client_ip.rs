//! The client's address behind trusted reverse proxies (`QETTA_TRUSTED_PROXIES`).
//!
//! Behind a load balancer every connection comes from the proxy, so per-IP limits (login
//! throttling, rate limits, service-key guessing) would be shared by every user, and one attacker
//! could lock everyone out. When the connection comes from a trusted proxy, the client is the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy (addresses further
//! left were written by whoever sent the request and prove nothing). From any other peer the
//! header is ignored, so it cannot be used to dodge a limit. The result replaces the request's
//! `ConnectInfo`, so every part of the service sees the same client address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use ipnet::IpNet;

#[derive(Clone, Copy, Default)]
pub struct TrustedProxies<'a>(pub &'a [IpNet]);

impl TrustedProxies<'_> {
    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the request's headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut chain = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else { return peer };
            for part in text.split(',') {
                match part.trim().parse::<IpAddr>() {
                    Ok(ip) => chain.push(ip),
                    // A malformed entry: nothing to the left of it can be trusted either.
                    Err(_) => chain.clear(),
                }
            }
        }
        chain.iter().rev().find(|ip| !self.contains(**ip)).or(chain.first()).copied().unwrap_or(peer)
    }
}

/// Replaces the request's `ConnectInfo` with the client's address when the peer is a trusted
/// proxy (run first, before everything that looks at the client's address: limits, audit entries).
pub fn resolve(trusted: &[IpNet], req: &mut Request) {
    if trusted.is_empty() {
        return;
    }
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = TrustedProxies(trusted).client(peer.ip(), req.headers());
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(client, peer.port())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_address() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()];
        let t = TrustedProxies(&nets);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.client(proxy, &headers(&["203.0.113.5"])), ip("203.0.113.5"));
        // The client wrote a fake first entry; the proxies appended the real one and themselves.
        assert_eq!(t.client(proxy, &headers(&["1.2.3.4, 203.0.113.5, 10.9.9.9"])), ip("203.0.113.5"));
        assert_eq!(t.client(proxy, &headers(&["1.2.3.4", "203.0.113.5"])), ip("203.0.113.5"));
        // From an untrusted peer the header is ignored.
        assert_eq!(t.client(ip("198.51.100.7"), &headers(&["203.0.113.5"])), ip("198.51.100.7"));
        // No header, or garbage: the proxy itself.
        assert_eq!(t.client(proxy, &headers(&[])), proxy);
        assert_eq!(t.client(proxy, &headers(&["not-an-ip"])), proxy);
        assert_eq!(t.client(proxy, &headers(&["1.2.3.4, garbage"])), proxy);
        // Only proxies in the chain: the left-most.
        assert_eq!(t.client(proxy, &headers(&["10.0.0.9, 10.0.0.8"])), ip("10.0.0.9"));
        assert_eq!(TrustedProxies::default().client(proxy, &headers(&["203.0.113.5"])), proxy);
    }
}
