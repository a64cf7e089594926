//! TCP and UDP for apps: the host resolves names, checks the manifest,
//! connects and listens on the app's behalf. (WASI preview 1 has no
//! `connect`, so this is the only network an app has.)

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// Longest a connect may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a read or write blocks before the app gets `WouldBlock` / an error.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest an accept waits.
pub(crate) const ACCEPT_TIMEOUT: Duration = Duration::from_millis(500);

/// The addresses `host:port` names: an IP literal as written, else what the
/// host's resolver returns.
fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok(match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port).to_socket_addrs()?.collect(),
    })
}

/// A UDP socket connected to `host:port` (its first resolved address), so
/// that it sends only there and receives only from there.
pub(crate) fn udp_connect(host: &str, port: u16) -> io::Result<UdpSocket> {
    let addr = resolve(host, port)?.into_iter().next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address")
    })?;
    let local: SocketAddr = if addr.is_ipv4() {
        (IpAddr::from([0u8; 4]), 0).into()
    } else {
        (IpAddr::from([0u16; 8]), 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    socket.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(socket)
}

/// Connects to `host:port`, trying each resolved address in turn.
pub(crate) fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let addrs = resolve(host, port)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Listens on `ip:port`.
pub(crate) fn listen(ip: IpAddr, port: u16) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(SocketAddr::new(ip, port))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Waits up to [`ACCEPT_TIMEOUT`] for a connection.
pub(crate) fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    let deadline = Instant::now() + ACCEPT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads what is there within the timeout.
pub(crate) fn read(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    stream.read(buf)
}

/// Writes what fits within the timeout.
pub(crate) fn write(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    stream.write(data)
}
