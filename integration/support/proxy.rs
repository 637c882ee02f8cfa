//! Two small HTTP middlemen for tests, on loopback, one thread per connection:
//! a forward proxy (absolute-form requests and CONNECT) that records what it carried, and
//! a throttling shim that answers every Nth request with an AWS throttling error and
//! forwards the rest to moto.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One request as a middleman saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub proxy_authorization: Option<String>,
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// Send `req` to `upstream` (host:port) in origin form and relay the whole answer.
fn forward(req: &Request, upstream: &str, path: &str, client: &mut TcpStream) {
    let Ok(mut up) = TcpStream::connect(upstream) else {
        let _ = client.write_all(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, path);
    for (k, v) in &req.headers {
        let lower = k.to_ascii_lowercase();
        if lower == "connection" || lower.starts_with("proxy-") {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    if up.write_all(head.as_bytes()).is_err() || up.write_all(&req.body).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    let _ = client.write_all(&answer);
}

fn split_absolute(target: &str) -> Option<(String, String)> {
    let rest = target.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Some((host, path.to_string()))
}

/// A forward proxy that records every request it carries.
pub struct ForwardProxy {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl ForwardProxy {
    pub fn start() -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || handle_proxy(stream, log));
            }
        });
        ForwardProxy { port, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn handle_proxy(stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let Ok(mut client) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    // Answers are close-delimited: one request per connection.
    if let Some(req) = read_request(&mut reader) {
        let auth = req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
            .map(|(_, v)| v.clone());
        if let Ok(mut l) = log.lock() {
            l.push(Seen {
                method: req.method.clone(),
                target: req.target.clone(),
                proxy_authorization: auth,
            });
        }
        if req.method == "CONNECT" {
            let Ok(up) = TcpStream::connect(&req.target) else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                return;
            };
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let (Ok(mut up_r), Ok(mut cl_w)) = (up.try_clone(), client.try_clone()) else {
                return;
            };
            let mut up_w = up;
            let mut cl_r = reader.into_inner();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_r, &mut cl_w);
            });
            let _ = std::io::copy(&mut cl_r, &mut up_w);
            return;
        }
        match split_absolute(&req.target) {
            Some((host, path)) => forward(&req, &host, &path, &mut client),
            None => {
                let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            }
        }
    }
}

/// A reverse proxy in front of moto that throttles every `every`th request.
pub struct ThrottlingShim {
    pub port: u16,
    /// Requests answered with a throttling error.
    pub throttled: Arc<AtomicU64>,
}

impl ThrottlingShim {
    pub fn start(upstream_port: u16, every: u64) -> ThrottlingShim {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind shim");
        let port = listener.local_addr().expect("addr").port();
        let throttled = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(0));
        let (t, n) = (throttled.clone(), total.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (t, n) = (t.clone(), n.clone());
                std::thread::spawn(move || {
                    let Ok(mut client) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(stream);
                    let Some(req) = read_request(&mut reader) else {
                        return;
                    };
                    let i = n.fetch_add(1, Ordering::SeqCst) + 1;
                    if i % every == 0 {
                        t.fetch_add(1, Ordering::SeqCst);
                        let json = req
                            .headers
                            .iter()
                            .any(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"));
                        let (ctype, body) = if json {
                            (
                                "application/x-amz-json-1.1",
                                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#
                                    .to_string(),
                            )
                        } else {
                            ("text/xml", "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".to_string())
                        };
                        let _ = write!(
                            client,
                            "HTTP/1.1 400 Bad Request\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        return;
                    }
                    let target = req.target.clone();
                    forward(
                        &req,
                        &format!("127.0.0.1:{upstream_port}"),
                        &target,
                        &mut client,
                    );
                });
            }
        });
        ThrottlingShim { port, throttled }
    }
}
