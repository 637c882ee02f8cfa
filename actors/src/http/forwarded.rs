//! Running behind a reverse proxy: the base path every route is served under, and who the
//! client is when nginx, Apache or a load balancer stands in front.
//!
//! Owns: [`ReverseProxy`] (from `http.base_path` and `http.trusted_proxies`),
//! [`client_addr`] and [`is_https`], the only ways the rest of the server learns the
//! client's address and scheme.
//!
//! Must never: believe `X-Forwarded-For` or `X-Forwarded-Proto` from a peer that is not a
//! trusted proxy, or read actix's `ConnectionInfo` (which believes them from anyone).

use std::net::{IpAddr, Ipv4Addr};

use actix_web::{web, HttpRequest};
use ipnet::IpNet;

use crate::settings::HttpSettings;

/// The reverse-proxy settings of the interface server, as the application uses them.
#[derive(Clone, Debug, Default)]
pub struct ReverseProxy {
    /// Prefix of every route (`/palisade`), or empty.
    pub base_path: String,
    pub trusted: TrustedProxies,
}

impl ReverseProxy {
    pub fn from_settings(http: &HttpSettings) -> Self {
        ReverseProxy {
            base_path: http.base_path.clone(),
            trusted: TrustedProxies::new(http.trusted_proxies.iter().map(|n| n.0).collect()),
        }
    }
}

/// The networks whose forwarding headers are believed. Empty: nobody's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies { nets }
    }

    /// Whether `ip` is one of the trusted proxies (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address, given the peer's and the `X-Forwarded-For` values in the
    /// order received: the peer itself unless it is trusted; else the right-most hop of
    /// the chain that is not a trusted proxy (each trusted proxy appended the address it
    /// was called from; what lies left of the first untrusted hop is that hop's own claim).
    /// A chain of trusted proxies only yields its left-most hop; an entry that is not an
    /// address ends the walk at the trusted proxy that wrote it.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let hops = forwarded_for
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty());
        let mut client = peer;
        for hop in hops.rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    None
}

/// The peer's address and whether it is a trusted proxy.
fn peer(req: &HttpRequest) -> (IpAddr, &TrustedProxies) {
    static NOBODY: TrustedProxies = TrustedProxies { nets: Vec::new() };
    let trusted = req
        .app_data::<web::Data<TrustedProxies>>()
        .map(|d| d.get_ref())
        .unwrap_or(&NOBODY);
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    (ip, trusted)
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the
/// right-most untrusted hop of `X-Forwarded-For` (see [`TrustedProxies::client`]).
pub fn client_addr(req: &HttpRequest) -> IpAddr {
    let (ip, trusted) = peer(req);
    let values: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    trusted.client(ip, &values)
}

/// Whether the client reached Palisade over HTTPS: the listener's own TLS, or, when the
/// peer is a trusted proxy, an `X-Forwarded-Proto` of `https` (its right-most value: the
/// one the nearest proxy vouches for).
pub fn is_https(req: &HttpRequest) -> bool {
    if req.app_config().secure() {
        return true;
    }
    let (ip, trusted) = peer(req);
    if !trusted.contains(ip) {
        return false;
    }
    req.headers()
        .get_all("x-forwarded-proto")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            nets.iter()
                .map(|n| {
                    n.parse::<crate::settings::ProxyNet>()
                        .expect("test network")
                        .0
                })
                .collect(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn request(peer: &str, proxies: &[&str], headers: &[(&str, &str)]) -> HttpRequest {
        let mut req = TestRequest::default()
            .peer_addr(format!("{peer}:40000").parse().expect("peer"))
            .app_data(web::Data::new(trusted(proxies)));
        for (k, v) in headers {
            req = req.append_header((*k, *v));
        }
        req.to_http_request()
    }

    #[test]
    fn a_trusted_peer_names_the_client() {
        let req = request(
            "10.0.0.5",
            &["10.0.0.0/8"],
            &[
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "https"),
            ],
        );
        assert_eq!(client_addr(&req), ip("203.0.113.7"));
        assert!(is_https(&req));
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address_or_scheme() {
        let req = request(
            "198.51.100.9",
            &["10.0.0.0/8"],
            &[
                ("X-Forwarded-For", "10.0.0.1, 127.0.0.1"),
                ("X-Forwarded-Proto", "https"),
            ],
        );
        assert_eq!(client_addr(&req), ip("198.51.100.9"));
        assert!(!is_https(&req));
        // nothing trusted at all: the default
        let req = request(
            "127.0.0.1",
            &[],
            &[
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "https"),
            ],
        );
        assert_eq!(client_addr(&req), ip("127.0.0.1"));
        assert!(!is_https(&req));
    }

    #[test]
    fn chains_yield_the_right_most_untrusted_hop() {
        let proxies = trusted(&["10.0.0.0/8", "192.0.2.1"]);
        let peer = ip("10.0.0.5");
        // the client put a fake first hop; the load balancer (192.0.2.1) and nginx
        // (10.0.0.5) appended what they saw
        assert_eq!(
            proxies.client(peer, &["1.1.1.1, 198.51.100.20, 192.0.2.1"]),
            ip("198.51.100.20")
        );
        // the same chain split over two headers
        assert_eq!(
            proxies.client(peer, &["1.1.1.1, 198.51.100.20", "192.0.2.1"]),
            ip("198.51.100.20")
        );
        // every hop trusted: the left-most one
        assert_eq!(
            proxies.client(peer, &["10.1.1.1, 192.0.2.1"]),
            ip("10.1.1.1")
        );
        // no header: the peer
        assert_eq!(proxies.client(peer, &[]), peer);
        // garbage ends the walk at the trusted proxy that wrote it
        assert_eq!(
            proxies.client(peer, &["198.51.100.20, not-an-ip, 192.0.2.1"]),
            ip("192.0.2.1")
        );
        // ports, brackets and IPv4-mapped IPv6
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.5"), &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            proxies.client(peer, &["198.51.100.20:5555"]),
            ip("198.51.100.20")
        );
    }

    #[test]
    fn the_nearest_proxy_decides_the_scheme() {
        let req = request(
            "10.0.0.5",
            &["10.0.0.0/8"],
            &[("X-Forwarded-Proto", "https, http")],
        );
        assert!(!is_https(&req), "the right-most value counts");
        let req = request(
            "10.0.0.5",
            &["10.0.0.0/8"],
            &[("X-Forwarded-Proto", "HTTPS")],
        );
        assert!(is_https(&req));
        let req = request("10.0.0.5", &["10.0.0.0/8"], &[]);
        assert!(!is_https(&req));
    }
}
