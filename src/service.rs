//! Talking to the service manager: the systemd notify protocol (READY, STATUS, STOPPING,
//! WATCHDOG as datagrams on `$NOTIFY_SOCKET`). Nothing here touches task state.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Send a notify message if the daemon runs under systemd with `Type=notify`; otherwise no-op.
pub fn notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else { return };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        abstract_send(&sock, name, message)
    } else {
        sock.send_to(message.as_bytes(), std::path::Path::new(&path))
            .map(|_| ())
    };
    if let Err(e) = sent {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

#[cfg(target_os = "linux")]
fn abstract_send(sock: &UnixDatagram, name: &[u8], message: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(message.as_bytes(), &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn abstract_send(_: &UnixDatagram, _: &[u8], _: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

/// Half the watchdog interval systemd asked for, if it asked.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(Duration::from_micros(usec / 2))
}
