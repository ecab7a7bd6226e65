//! Which addresses a webhook may reach. Every name is resolved by [`GuardedResolver`] at each
//! connection, and an address in a loopback, link-local, private, shared or otherwise
//! non-public range is dropped, unless the operator allows private networks: a URL that
//! named a public host when it was registered cannot be pointed inside later (DNS
//! rebinding). A URL whose host is an address literal is judged before any request
//! ([`refusal_of_literal`]), since no name is resolved for it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` lies where no webhook goes unless private networks are allowed.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(v6),
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // 0.0.0.0/8 ("this network"), 100.64.0.0/10 (shared, carrier NAT), 192.0.0.0/24
        // (protocol assignments), 198.18.0.0/15 (benchmarks), 240.0.0.0/4 (reserved).
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, 2001:db8::/32 documentation,
        // 64:ff9b::/96 NAT64 (it reaches IPv4 addresses, private ones included).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// Why a URL whose host is an address literal may not be reached; `None` when it may, or
/// when its host is a name (the resolver judges those).
pub fn refusal_of_literal(url: &url::Url, allow_private: bool) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    (!allow_private && is_private(ip)).then(|| refusal(&ip))
}

fn refusal(ip: &IpAddr) -> String {
    format!(
        "{ip} is a loopback, link-local or private address, which webhooks may not reach \
         (PLEXICA_WEBHOOK_ALLOW_PRIVATE_NETWORKS)"
    )
}

/// Resolves with the system resolver, then drops the addresses webhooks may not reach.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl GuardedResolver {
    pub fn shared(allow_private: bool) -> Arc<Self> {
        Arc::new(Self { allow_private })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| allow_private || !is_private(addr.ip()))
                .collect();
            if allowed.is_empty() {
                let reason = match resolved.first() {
                    Some(addr) => format!("{host} resolves to {}", refusal(&addr.ip())),
                    None => format!("{host} resolves to no address"),
                };
                return Err(reason.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_ranges_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn an_address_literal_is_judged_before_any_request() {
        let url = |u: &str| url::Url::parse(u).unwrap();
        assert!(refusal_of_literal(&url("http://127.0.0.1:8080/x"), false).is_some());
        assert!(refusal_of_literal(&url("http://[::1]/x"), false).is_some());
        assert!(refusal_of_literal(&url("http://127.0.0.1:8080/x"), true).is_none());
        assert!(refusal_of_literal(&url("https://hooks.example.com/"), false).is_none());
        assert!(refusal_of_literal(&url("http://1.1.1.1/"), false).is_none());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_unless_allowed() {
        let name = || -> Name { "localhost".parse().unwrap() };
        let refused = GuardedResolver {
            allow_private: false,
        }
        .resolve(name())
        .await;
        let error = refused.err().expect("refused").to_string();
        assert!(error.contains("localhost resolves to"), "{error}");
        let allowed = GuardedResolver {
            allow_private: true,
        }
        .resolve(name())
        .await;
        assert!(allowed.expect("resolved").next().is_some());
    }
}
