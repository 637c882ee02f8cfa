//! systemd service notifications (the `sd_notify` protocol) without a crate: readiness,
//! stopping, status text and watchdog pings, as datagrams to the socket `$NOTIFY_SOCKET`
//! names (a path, or `@name` for an abstract socket).
//!
//! Owns: reading `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, and the watchdog loop.
//! Must never: fail or block the daemon (a notification that cannot be sent is logged at
//! debug and dropped), or do anything when `NOTIFY_SOCKET` is unset.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
enum NotifyError {
    #[error("notify socket {0:?} is neither an absolute path nor @abstract")]
    Address(String),
    #[error("notify socket {socket:?}: {reason}")]
    Send { socket: String, reason: String },
}

/// Tell systemd the node is up: its roles run and, with the interface role, it listens.
pub fn ready() {
    notify("READY=1\nSTATUS=running");
}

/// Tell systemd the node is draining after a shutdown signal.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=draining running jobs");
}

/// A free-form status line for `systemctl status`.
pub fn status(text: &str) {
    // a newline would start another assignment
    let line = text.replace('\n', " ");
    notify(&format!("STATUS={line}"));
}

/// Ping the watchdog: the node is alive.
pub fn watchdog() {
    notify("WATCHDOG=1");
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, when systemd asks this process
/// for pings; `None` otherwise.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// Ping the watchdog every `every` for as long as `alive()` holds; once it does not, stop
/// pinging so that systemd's watchdog restarts the node.
pub async fn watchdog_loop(every: Duration, alive: impl Fn() -> bool) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !alive() {
            tracing::warn!("supervisor gone: no more watchdog pings");
            status("supervisor gone; waiting for the watchdog");
            return;
        }
        watchdog();
    }
}

/// Half of `usec` microseconds, when set, positive and meant for `our_pid`.
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(our_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

fn notify(msg: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&socket, msg) {
        tracing::debug!(error = %e, "systemd notification not sent");
    }
}

/// Send `msg` as one datagram to the socket `socket` names.
fn send_to(socket: &OsStr, msg: &str) -> Result<(), NotifyError> {
    let shown = socket.to_string_lossy().into_owned();
    let failed = |e: std::io::Error| NotifyError::Send {
        socket: shown.clone(),
        reason: e.to_string(),
    };
    let sock = UnixDatagram::unbound().map_err(failed)?;
    let bytes = socket.as_bytes();
    let sent = match bytes.first() {
        Some(b'/') => sock.send_to(msg.as_bytes(), socket).map_err(failed)?,
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            let addr =
                std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..]).map_err(failed)?;
            sock.send_to_addr(msg.as_bytes(), &addr).map_err(failed)?
        }
        _ => return Err(NotifyError::Address(shown)),
    };
    if sent != msg.len() {
        return Err(NotifyError::Send {
            socket: shown,
            reason: format!("sent {sent} of {} bytes", msg.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;

    fn receive(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send_to(path.as_os_str(), "READY=1\nSTATUS=running").expect("sent");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=running");
        send_to(path.as_os_str(), "WATCHDOG=1").expect("sent");
        assert_eq!(receive(&listener), "WATCHDOG=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("palisade-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind");
        send_to(OsStr::new(&format!("@{name}")), "STOPPING=1").expect("sent");
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn bad_or_absent_sockets_are_errors_not_panics() {
        let err = send_to(OsStr::new("relative.sock"), "READY=1").expect_err("relative");
        assert!(matches!(err, NotifyError::Address(_)), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("nobody-listens.sock");
        let err = send_to(gone.as_os_str(), "READY=1").expect_err("no listener");
        assert!(err.to_string().contains("nobody-listens.sock"), "{err}");
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_pid() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval_from(Some("30000000"), None, 42), half);
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("42"), 42),
            half
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("41"), 42),
            None
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("x"), 42),
            None
        );
        assert_eq!(watchdog_interval_from(None, Some("42"), 42), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 42), None);
    }

    #[test]
    fn the_watchdog_loop_stops_when_the_node_is_gone() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let alive = || calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3;
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                watchdog_loop(Duration::from_millis(1), alive),
            )
            .await
        })
        .expect("the loop returns once alive() is false");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
    }
}
