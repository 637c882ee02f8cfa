//! Outbound proxy rules from `http_proxy`, `https_proxy` and `no_proxy`, and the hyper
//! connector that obeys them.
//!
//! Owns: parsing the proxy variables ([`ProxyConfig`]), deciding per destination whether a
//! connection goes through a proxy ([`ProxyConfig::proxy_for`]), and opening connections
//! accordingly ([`ProxyConnector`]): direct, to an HTTP proxy for plain `http://` requests
//! (absolute-form request lines), or through a `CONNECT` tunnel for `https://`.
//!
//! Must never: let the user name or password of a proxy URL reach a log line, an error
//! string or `Debug` output; or exempt a destination that `no_proxy` does not name.
//!
//! Rules, as curl applies them:
//! - lowercase variables win over uppercase ones when both are set; an empty value is unset;
//! - `https://` destinations use `https_proxy` only, `http://` ones `http_proxy` only;
//! - a proxy URL may omit its scheme (`proxy.corp:3128`, meaning `http://`); only `http://`
//!   proxies are supported; a proxy URL without a port uses **1080**, as curl does;
//! - `no_proxy` is a comma list of `*` (everything), host names (`example.com` and
//!   `.example.com` both match the domain and its subdomains), IP addresses, CIDR blocks
//!   (`10.0.0.0/8`, `::1/128`), each optionally followed by `:port`;
//! - loopback (`localhost`, `127.0.0.0/8`, `::1`) is **not** exempt by default: add it to
//!   `no_proxy` when local services (moto, Redis, MySQL) must be reached directly.

use base64::Engine;
use hyper::client::connect::{Connected, Connection, HttpConnector};
use hyper::service::Service;
use hyper::Uri;
use ipnet::IpNet;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The port of a proxy URL that names none (curl's default).
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// Largest `CONNECT` answer head we read before giving up.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A proxy variable does not hold a usable URL (the value itself is never repeated).
    #[error("invalid proxy url in {var}: {reason}")]
    InvalidUrl { var: &'static str, reason: String },
    /// An entry of `no_proxy` cannot be understood.
    #[error("invalid no_proxy entry `{0}`")]
    InvalidNoProxy(String),
    /// The destination URI cannot be connected to (no host, unknown scheme).
    #[error("invalid destination: {0}")]
    Destination(String),
    /// Connecting to the destination or to the proxy failed.
    #[error("connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The proxy refused or botched the `CONNECT` tunnel.
    #[error("proxy {proxy} refused tunnel to {target}: {status}")]
    Tunnel {
        proxy: String,
        target: String,
        status: String,
    },
}

/// Basic credentials of a proxy URL. Never printed.
#[derive(Clone, PartialEq, Eq)]
struct ProxyCredentials {
    user: String,
    password: String,
}

/// One proxy: host, port and optional basic-auth credentials.
///
/// `Debug` and `Display` show `http://***@host:port` when there are credentials and
/// `http://host:port` otherwise; the user and password are never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    host: String,
    port: u16,
    credentials: Option<ProxyCredentials>,
}

impl ProxyTarget {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The `Proxy-Authorization` header value (`Basic ...`) when the URL has credentials.
    /// The value is a secret: send it, never log it.
    pub fn authorization(&self) -> Option<hyper::header::HeaderValue> {
        let c = self.credentials.as_ref()?;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        let mut value = hyper::header::HeaderValue::from_str(&format!("Basic {token}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// `host:port`, with brackets around an IPv6 host.
    fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// Parse a proxy URL (`[http://][user[:password]@]host[:port][/]`).
    fn parse(var: &'static str, raw: &str) -> Result<ProxyTarget, ProxyError> {
        let bad = |reason: &str| ProxyError::InvalidUrl {
            var,
            reason: reason.to_string(),
        };
        let raw = raw.trim();
        let rest = match raw.find("://") {
            Some(i) => {
                let scheme = raw[..i].to_ascii_lowercase();
                if scheme != "http" {
                    return Err(bad(&format!(
                        "unsupported proxy scheme `{scheme}` (only http is supported)"
                    )));
                }
                &raw[i + 3..]
            }
            None => raw,
        };
        // Everything up to the first '/', '?' or '#' is the authority.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority_part = &rest[..end];
        let (userinfo, hostport) = match authority_part.rfind('@') {
            Some(i) => (Some(&authority_part[..i]), &authority_part[i + 1..]),
            None => (None, authority_part),
        };
        let credentials = match userinfo {
            None => None,
            Some(info) => {
                let (user, password) = match info.find(':') {
                    Some(i) => (&info[..i], &info[i + 1..]),
                    None => (info, ""),
                };
                Some(ProxyCredentials {
                    user: percent_decode(user),
                    password: percent_decode(password),
                })
            }
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("bad host or port"))?;
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        Ok(ProxyTarget {
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(DEFAULT_PROXY_PORT),
            credentials,
        })
    }
}

impl fmt::Display for ProxyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.credentials.is_some() {
            write!(f, "http://***@{}", self.authority())
        } else {
            write!(f, "http://{}", self.authority())
        }
    }
}

impl fmt::Debug for ProxyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One `no_proxy` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NoProxyRule {
    All,
    /// A domain (lowercase, no leading dot): matches itself and its subdomains.
    Domain(String, Option<u16>),
    Ip(IpAddr, Option<u16>),
    Net(IpNet, Option<u16>),
}

impl NoProxyRule {
    fn parse(entry: &str) -> Result<NoProxyRule, ProxyError> {
        let bad = || ProxyError::InvalidNoProxy(entry.to_string());
        if entry == "*" {
            return Ok(NoProxyRule::All);
        }
        // An unbracketed IPv6 address or network has several colons and no port.
        if entry.matches(':').count() > 1 && !entry.starts_with('[') {
            if let Ok(ip) = entry.parse::<IpAddr>() {
                return Ok(NoProxyRule::Ip(ip, None));
            }
            if let Ok(net) = entry.parse::<IpNet>() {
                return Ok(NoProxyRule::Net(net, None));
            }
            return Err(bad());
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let close = rest.find(']').ok_or_else(bad)?;
            let inner = &rest[..close];
            let after = &rest[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (inner, port)
        } else {
            match entry.rfind(':') {
                Some(i) => (
                    &entry[..i],
                    Some(entry[i + 1..].parse::<u16>().map_err(|_| bad())?),
                ),
                None => (entry, None),
            }
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(NoProxyRule::Ip(ip, port));
        }
        if host.contains('/') {
            return host
                .parse::<IpNet>()
                .map(|net| NoProxyRule::Net(net, port))
                .map_err(|_| bad());
        }
        let domain = host
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if domain.is_empty() {
            return Err(bad());
        }
        Ok(NoProxyRule::Domain(domain, port))
    }

    fn matches(&self, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
        let port_ok = |p: &Option<u16>| match p {
            None => true,
            Some(p) => *p == port,
        };
        match self {
            NoProxyRule::All => true,
            NoProxyRule::Ip(rule, p) => port_ok(p) && ip == Some(*rule),
            NoProxyRule::Net(net, p) => port_ok(p) && ip.is_some_and(|ip| net.contains(&ip)),
            NoProxyRule::Domain(domain, p) => {
                port_ok(p)
                    && ip.is_none()
                    && (host == domain
                        || (host.len() > domain.len()
                            && host.ends_with(domain.as_str())
                            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'))
            }
        }
    }
}

/// The proxy rules of this process: which proxy (if any) serves each destination.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    http: Option<ProxyTarget>,
    https: Option<ProxyTarget>,
    no_proxy: Vec<NoProxyRule>,
}

impl ProxyConfig {
    /// No proxy for anything.
    pub fn none() -> ProxyConfig {
        ProxyConfig::default()
    }

    /// Read the proxy variables of this process.
    pub fn from_env() -> Result<ProxyConfig, ProxyError> {
        ProxyConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// Read the proxy variables through `get` (a stand-in for the environment in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<ProxyConfig, ProxyError> {
        let var = |lower: &'static str, upper: &'static str| -> Option<(&'static str, String)> {
            let non_empty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
            non_empty(get(lower))
                .map(|v| (lower, v))
                .or_else(|| non_empty(get(upper)).map(|v| (upper, v)))
        };
        let http = var("http_proxy", "HTTP_PROXY")
            .map(|(name, v)| ProxyTarget::parse(name, &v))
            .transpose()?;
        let https = var("https_proxy", "HTTPS_PROXY")
            .map(|(name, v)| ProxyTarget::parse(name, &v))
            .transpose()?;
        let no_proxy = match var("no_proxy", "NO_PROXY") {
            None => Vec::new(),
            Some((_, list)) => list
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(NoProxyRule::parse)
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(ProxyConfig {
            http,
            https,
            no_proxy,
        })
    }

    /// Whether any proxy is configured at all.
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The proxy for a destination, or `None` to connect directly (no proxy for the
    /// scheme, or `no_proxy` names the destination).
    pub fn proxy_for(&self, scheme: &str, host: &str, port: u16) -> Option<&ProxyTarget> {
        let proxy = match scheme.to_ascii_lowercase().as_str() {
            "http" => self.http.as_ref()?,
            "https" => self.https.as_ref()?,
            _ => return None,
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        if self
            .no_proxy
            .iter()
            .any(|rule| rule.matches(&host, ip, port))
        {
            return None;
        }
        Some(proxy)
    }

    /// The proxy for a request URI (see [`ProxyConfig::proxy_for`]).
    pub fn proxy_for_uri(&self, uri: &Uri) -> Option<&ProxyTarget> {
        let (scheme, host, port) = destination(uri).ok()?;
        self.proxy_for(scheme, host, port)
    }

    /// The `Proxy-Authorization` value a plain `http://` request to `uri` must carry: set
    /// when it goes through a proxy that has credentials (`https://` requests are tunnelled
    /// and authenticate in the `CONNECT` instead).
    pub fn authorization_for(&self, uri: &Uri) -> Option<hyper::header::HeaderValue> {
        if uri.scheme_str() != Some("http") {
            return None;
        }
        self.proxy_for_uri(uri)?.authorization()
    }
}

/// A hyper 0.14 connector that honours a [`ProxyConfig`]. Wrap it in
/// `hyper_rustls::HttpsConnector` for TLS (see [`https_connector`]).
#[derive(Clone)]
pub struct ProxyConnector {
    http: HttpConnector,
    config: Arc<ProxyConfig>,
}

impl ProxyConnector {
    pub fn new(config: Arc<ProxyConfig>, connect_timeout: Duration) -> ProxyConnector {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        ProxyConnector { http, config }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }
}

/// A [`ProxyConnector`] under TLS (webpki roots), for `https://` and `http://` alike.
pub fn https_connector(
    config: Arc<ProxyConfig>,
    connect_timeout: Duration,
) -> hyper_rustls::HttpsConnector<ProxyConnector> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(ProxyConnector::new(config, connect_timeout))
}

/// A connection made by [`ProxyConnector`]: a TCP stream to the destination, to a proxy
/// (for plain http), or a `CONNECT` tunnel through one.
pub struct ProxyStream {
    tcp: TcpStream,
    /// True when hyper must write absolute-form request lines (plain http via a proxy).
    via_http_proxy: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.tcp.connected().proxy(self.via_http_proxy)
    }
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<ProxyStream, ProxyError>> + Send>>;

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = ProxyError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(|e| ProxyError::Connect {
            target: "connector".to_string(),
            source: Box::new(e),
        })
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let config = self.config.clone();
        Box::pin(async move {
            let (scheme, host, port) = destination(&dst)?;
            let target = authority(host, port);
            let Some(proxy) = config.proxy_for(scheme, host, port).cloned() else {
                let tcp = http
                    .call(dst.clone())
                    .await
                    .map_err(|e| ProxyError::Connect {
                        target: target.clone(),
                        source: Box::new(e),
                    })?;
                return Ok(ProxyStream {
                    tcp,
                    via_http_proxy: false,
                });
            };
            let proxy_uri: Uri = format!("http://{}", proxy.authority())
                .parse()
                .map_err(|_| ProxyError::Destination(format!("bad proxy address {proxy}")))?;
            let mut tcp = http
                .call(proxy_uri)
                .await
                .map_err(|e| ProxyError::Connect {
                    target: proxy.to_string(),
                    source: Box::new(e),
                })?;
            if scheme == "http" {
                return Ok(ProxyStream {
                    tcp,
                    via_http_proxy: true,
                });
            }
            tunnel(&mut tcp, &proxy, &target).await?;
            Ok(ProxyStream {
                tcp,
                via_http_proxy: false,
            })
        })
    }
}

/// Ask the proxy on `tcp` for a `CONNECT` tunnel to `target` (`host:port`).
async fn tunnel(tcp: &mut TcpStream, proxy: &ProxyTarget, target: &str) -> Result<(), ProxyError> {
    let io_err = |e: io::Error| ProxyError::Connect {
        target: proxy.to_string(),
        source: Box::new(e),
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = proxy.authorization() {
        head.push_str("Proxy-Authorization: ");
        head.push_str(auth.to_str().unwrap_or_default());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.map_err(io_err)?;
    // Read the answer head byte by byte so no tunnelled byte is consumed.
    let mut answer = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_CONNECT_RESPONSE {
            return Err(ProxyError::Tunnel {
                proxy: proxy.to_string(),
                target: target.to_string(),
                status: "answer head too long".to_string(),
            });
        }
        let n = tcp.read(&mut byte).await.map_err(io_err)?;
        if n == 0 {
            return Err(ProxyError::Tunnel {
                proxy: proxy.to_string(),
                target: target.to_string(),
                status: "connection closed".to_string(),
            });
        }
        answer.push(byte[0]);
    }
    let status_line = answer
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if code.len() == 3 && code.starts_with('2') {
        Ok(())
    } else {
        Err(ProxyError::Tunnel {
            proxy: proxy.to_string(),
            target: target.to_string(),
            status: status_line,
        })
    }
}

/// Scheme, host and port of a destination URI (port defaulted by scheme).
fn destination(uri: &Uri) -> Result<(&str, &str, u16), ProxyError> {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri
        .host()
        .ok_or_else(|| ProxyError::Destination(format!("no host in {uri}")))?;
    let port = match (uri.port_u16(), scheme) {
        (Some(p), _) => p,
        (None, "https") => 443,
        (None, "http") => 80,
        (None, other) => return Err(ProxyError::Destination(format!("unknown scheme {other}"))),
    };
    Ok((scheme, host, port))
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Split `host[:port]` / `[v6][:port]`; `None` when the port is not a number.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rfind(':') {
        Some(i) if s[..i].contains(':') => Some((s, None)), // bare IPv6
        Some(i) => Some((&s[..i], Some(s[i + 1..].parse().ok()?))),
        None => Some((s, None)),
    }
}

/// Decode `%XX` escapes of a URL user-info part (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<ProxyConfig, ProxyError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyConfig::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn parses_urls_with_and_without_scheme_port_and_credentials() {
        let c = config(&[
            ("http_proxy", "http://user:p%40ss@Proxy.Corp:3128/"),
            ("https_proxy", "proxy2.corp"),
        ])
        .expect("parses");
        let http = c.proxy_for("http", "example.com", 80).expect("http proxy");
        assert_eq!((http.host(), http.port()), ("proxy.corp", 3128));
        assert!(http.has_credentials());
        let auth = http.authorization().expect("auth header");
        let expected = base64::engine::general_purpose::STANDARD.encode("user:p@ss");
        assert_eq!(auth.to_str().expect("ascii"), format!("Basic {expected}"));
        let https = c
            .proxy_for("https", "example.com", 443)
            .expect("https proxy");
        assert_eq!(
            (https.host(), https.port()),
            ("proxy2.corp", DEFAULT_PROXY_PORT)
        );
        assert!(!https.has_credentials());
        assert!(https.authorization().is_none());

        let v6 = config(&[("http_proxy", "http://[::1]:8080")]).expect("v6");
        let p = v6.proxy_for("http", "example.com", 80).expect("proxy");
        assert_eq!((p.host(), p.port()), ("::1", 8080));
        assert_eq!(p.to_string(), "http://[::1]:8080");
    }

    #[test]
    fn lowercase_wins_and_empty_is_unset() {
        let c = config(&[
            ("http_proxy", "http://lower:1"),
            ("HTTP_PROXY", "http://upper:2"),
            ("https_proxy", ""),
            ("HTTPS_PROXY", "http://upper:3"),
        ])
        .expect("parses");
        assert_eq!(
            c.proxy_for("http", "a.b", 80).expect("http").host(),
            "lower"
        );
        assert_eq!(
            c.proxy_for("https", "a.b", 443).expect("https").host(),
            "upper"
        );
        assert!(config(&[]).expect("empty").is_empty());
        // each scheme uses its own variable only
        let only_http = config(&[("http_proxy", "p:1")]).expect("parses");
        assert!(only_http.proxy_for("https", "a.b", 443).is_none());
    }

    #[test]
    fn rejects_bad_urls_without_echoing_them() {
        let err = config(&[("https_proxy", "socks5://u:secretpw@h:1")]).expect_err("socks");
        assert!(!err.to_string().contains("secretpw"), "{err}");
        assert!(err.to_string().contains("https_proxy"), "{err}");
        let err = config(&[("http_proxy", "http://u:secretpw@h:notaport")]).expect_err("port");
        assert!(!err.to_string().contains("secretpw"), "{err}");
        assert!(config(&[("http_proxy", "http://u:p@:80")]).is_err());
        assert!(config(&[("http_proxy", "p:1"), ("no_proxy", "a.com:xx")]).is_err());
    }

    #[test]
    fn redacts_credentials_in_debug_and_display() {
        let c = config(&[("http_proxy", "http://alice:hunter2@proxy.corp:3128")]).expect("ok");
        let p = c.proxy_for("http", "example.com", 80).expect("proxy");
        assert_eq!(p.to_string(), "http://***@proxy.corp:3128");
        assert_eq!(format!("{p:?}"), "http://***@proxy.corp:3128");
        let whole = format!("{c:?}");
        assert!(
            !whole.contains("alice") && !whole.contains("hunter2"),
            "{whole}"
        );
    }

    #[test]
    fn no_proxy_matches_domains_ips_cidrs_and_ports() {
        let c = config(&[
            ("http_proxy", "proxy:3128"),
            ("https_proxy", "proxy:3128"),
            (
                "no_proxy",
                " .internal.corp, example.com,10.0.0.0/8, 192.168.1.5, ::1, redis:6379,[fd00::1]:443, 2001:db8::/32",
            ),
        ])
        .expect("parses");
        let direct =
            |scheme: &str, host: &str, port: u16| c.proxy_for(scheme, host, port).is_none();
        assert!(direct("https", "a.internal.corp", 443));
        assert!(direct("https", "internal.corp", 443));
        assert!(direct("https", "EXAMPLE.com", 443));
        assert!(direct("https", "s3.example.com", 443));
        assert!(!direct("https", "badexample.com", 443));
        assert!(!direct("https", "example.com.evil", 443));
        assert!(direct("http", "10.1.2.3", 80));
        assert!(!direct("http", "11.1.2.3", 80));
        assert!(direct("http", "192.168.1.5", 8080));
        assert!(direct("http", "[::1]", 8080));
        assert!(direct("http", "::1", 8080));
        assert!(direct("http", "redis", 6379));
        assert!(!direct("http", "redis", 6380));
        assert!(direct("https", "fd00::1", 443));
        assert!(!direct("https", "fd00::1", 8443));
        assert!(direct("https", "2001:db8::5", 443));
        // loopback is not implicitly exempt
        assert!(!direct("http", "127.0.0.1", 80));
        assert!(!direct("http", "localhost", 80));

        let all = config(&[("http_proxy", "proxy:3128"), ("no_proxy", "*")]).expect("ok");
        assert!(all.proxy_for("http", "anything", 80).is_none());
        let loopback = config(&[
            ("http_proxy", "proxy:3128"),
            ("NO_PROXY", "127.0.0.0/8,localhost"),
        ])
        .expect("ok");
        assert!(loopback.proxy_for("http", "127.0.0.1", 5000).is_none());
        assert!(loopback.proxy_for("http", "127.9.9.9", 5000).is_none());
        assert!(loopback.proxy_for("http", "localhost", 5000).is_none());
    }

    #[test]
    fn authorization_only_for_plain_http_via_authenticated_proxy() {
        let c = config(&[
            ("http_proxy", "http://u:p@proxy:3128"),
            ("https_proxy", "http://u:p@proxy:3128"),
            ("no_proxy", "direct.corp"),
        ])
        .expect("ok");
        let uri = |s: &str| s.parse::<Uri>().expect("uri");
        assert!(c.authorization_for(&uri("http://a.corp/x")).is_some());
        assert!(c.authorization_for(&uri("https://a.corp/x")).is_none());
        assert!(c.authorization_for(&uri("http://direct.corp/x")).is_none());
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%40b%3a"), "a@b:");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    /// A CONNECT proxy on loopback that records the request head and answers `status`.
    async fn fake_connect_proxy(status: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handle = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            sock.write_all(status.as_bytes()).await.expect("write");
            sock.write_all(b"tunnelled").await.expect("write");
            String::from_utf8_lossy(&head).into_owned()
        });
        (port, handle)
    }

    #[tokio::test]
    async fn connect_tunnel_sends_credentials_and_keeps_tunnelled_bytes() {
        let (port, seen) = fake_connect_proxy("HTTP/1.1 200 Connection established\r\n\r\n").await;
        let c = config(&[(
            "https_proxy",
            &format!("http://bob:s3cret@127.0.0.1:{port}"),
        )])
        .expect("ok");
        let mut connector = ProxyConnector::new(Arc::new(c), Duration::from_secs(2));
        let mut stream = connector
            .call("https://aws.example:443/".parse().expect("uri"))
            .await
            .expect("tunnel");
        assert!(!stream.connected().is_proxied());
        let mut rest = [0u8; 9];
        stream.read_exact(&mut rest).await.expect("tunnelled bytes");
        assert_eq!(&rest, b"tunnelled");
        let head = seen.await.expect("proxy task");
        assert!(
            head.starts_with("CONNECT aws.example:443 HTTP/1.1\r\n"),
            "{head}"
        );
        let expected = base64::engine::general_purpose::STANDARD.encode("bob:s3cret");
        assert!(
            head.contains(&format!("Proxy-Authorization: Basic {expected}\r\n")),
            "{head}"
        );
    }

    #[tokio::test]
    async fn refused_tunnel_is_an_error_without_credentials() {
        let (port, _seen) =
            fake_connect_proxy("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let c = config(&[(
            "https_proxy",
            &format!("http://bob:s3cret@127.0.0.1:{port}"),
        )])
        .expect("ok");
        let mut connector = ProxyConnector::new(Arc::new(c), Duration::from_secs(2));
        let err = match connector
            .call("https://aws.example/".parse().expect("uri"))
            .await
        {
            Ok(_) => panic!("tunnel should be refused"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("407"), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("bob"), "{err}");
    }

    #[tokio::test]
    async fn plain_http_via_proxy_is_marked_proxied() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let c = config(&[("http_proxy", &format!("127.0.0.1:{port}"))]).expect("ok");
        let mut connector = ProxyConnector::new(Arc::new(c), Duration::from_secs(2));
        let stream = connector
            .call("http://far.example/".parse().expect("uri"))
            .await
            .expect("connect to proxy");
        assert!(stream.connected().is_proxied());
        let (_sock, peer) = listener.accept().await.expect("proxy saw the connection");
        assert_eq!(Some(peer), stream.tcp.local_addr().ok());
    }
}
