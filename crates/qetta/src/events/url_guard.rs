//! Where webhooks may go: no server-side request forgery. An endpoint URL must be `https://`
//! without credentials, and every address its host resolves to must be public: not loopback,
//! private, link-local (cloud metadata at 169.254.169.254 included), CGNAT, multicast, unspecified,
//! documentation, benchmarking or reserved, in IPv4 or IPv6 (IPv4-mapped, NAT64 and 6to4 addresses
//! are judged by the IPv4 address inside). Checked when an endpoint is saved and at every delivery,
//! where the delivery client's resolver ([`GuardedResolver`]) is the check: the connection goes to
//! the very addresses that were checked, so a DNS answer that changes in between (rebinding) finds
//! nothing to exploit. `QETTA_WEBHOOK_ALLOW_PRIVATE=true` lifts the address rule and allows plain
//! http to loopback (development and tests).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest wait for a DNS answer.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("the URL is not valid")]
    Malformed,
    #[error("the URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("the URL must use https://")]
    NotHttps,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("the URL must not have a fragment (#…)")]
    Fragment,
    #[error("the host {0} resolves to no address")]
    Unresolvable(String),
    #[error("the host {host} is (or resolves to) {ip}, which is not a public address")]
    Forbidden { host: String, ip: IpAddr },
}

impl UrlError {
    /// The stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden { .. } => "webhook_url_forbidden",
            Self::Unresolvable(_) => "webhook_url_unresolvable",
            _ => "invalid_webhook_url",
        }
    }
}

/// Whether `ip` is one that webhooks may never reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || a >= 240 // reserved 240.0.0.0/4
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    // NAT64 64:ff9b::/96 and 6to4 2002::/16 carry an IPv4 address that decides.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return forbidden_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[0] == 0x2002 {
        return forbidden_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || s[0..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::/96 (deprecated)
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7 (fd00:ec2::254 is EC2's metadata)
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments 2001::/23 (Teredo included)
        || s[0] == 0x0100 && s[1..4] == [0, 0, 0] // discard-only 100::/64
}

/// The static rules (scheme, credentials, length, literal addresses); `Ok` holds the parsed URL.
pub fn check_static(text: &str, allow_private: bool) -> Result<reqwest::Url, UrlError> {
    if text.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let url = reqwest::Url::parse(text).map_err(|_| UrlError::Malformed)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(UrlError::Fragment);
    }
    let host = url.host().ok_or(UrlError::Malformed)?;
    let loopback = match &host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    };
    match url.scheme() {
        "https" => {}
        "http" if allow_private && loopback => {}
        _ => return Err(UrlError::NotHttps),
    }
    if !allow_private {
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal.filter(|ip| is_forbidden(*ip)) {
            return Err(UrlError::Forbidden { host: url.host_str().unwrap_or_default().to_string(), ip });
        }
    }
    Ok(url)
}

/// Resolves `host` and checks every address it has (one forbidden address refuses the host).
pub async fn resolve_checked(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, UrlError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, 0)],
        // Bounded: a resolver that does not answer must not hold a request or a delivery slot.
        Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, 0)))
            .await
            .map_err(|_| UrlError::Unresolvable(host.to_string()))?
            .map_err(|_| UrlError::Unresolvable(host.to_string()))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(UrlError::Unresolvable(host.to_string()));
    }
    if !allow_private {
        if let Some(a) = addrs.iter().find(|a| is_forbidden(a.ip())) {
            return Err(UrlError::Forbidden { host: host.to_string(), ip: a.ip() });
        }
    }
    Ok(addrs)
}

/// The full check when an endpoint is saved.
pub async fn check(text: &str, allow_private: bool) -> Result<reqwest::Url, UrlError> {
    let url = check_static(text, allow_private)?;
    resolve_checked(url.host_str().unwrap_or_default(), allow_private).await?;
    Ok(url)
}

/// The delivery client's resolver: answers only addresses that pass the rules, so the
/// connection is made to what was checked.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve_checked(&host, allow_private).await.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The one HTTP client deliveries use: the guarded resolver, no proxy (a proxy would resolve the
/// host itself), no redirects, `timeout` per attempt.
pub fn delivery_client(allow_private: bool, timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("qetta-connect-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a static client configuration is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn static_rules() {
        assert_eq!(check_static("http://example.com/h", false), Err(UrlError::NotHttps));
        assert_eq!(check_static("https://u:p@example.com/h", false), Err(UrlError::Credentials));
        assert_eq!(check_static("https://example.com/h#x", false), Err(UrlError::Fragment));
        assert_eq!(check_static(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN)), false), Err(UrlError::TooLong));
        assert_eq!(check_static("ftp://example.com/", true), Err(UrlError::NotHttps));
        assert!(matches!(check_static("https://[::ffff:127.0.0.1]/", false), Err(UrlError::Forbidden { .. })));
        assert!(matches!(check_static("https://169.254.169.254/latest", false), Err(UrlError::Forbidden { .. })));
        assert!(check_static("https://example.com/hook?x=1", false).is_ok());
        // Development: plain http to loopback only.
        assert!(check_static("http://127.0.0.1:9/h", true).is_ok());
        assert_eq!(check_static("http://example.com/h", true), Err(UrlError::NotHttps));
    }
}
