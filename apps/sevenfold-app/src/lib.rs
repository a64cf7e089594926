//! Guest-side bindings to the Sevenfold compartment host API.
//!
//! A Sevenfold app is a `wasm32-wasip1` program. Files, clocks, randomness and
//! standard output come from WASI; everything the manifest grants beyond that
//! (GPIO pins, UARTs, outbound and listening TCP, channels to other apps, the
//! device certificate) goes through the host functions of the import module
//! `sevenfold`, wrapped here in safe Rust. The host checks every call against
//! the app's manifest: a call that is not granted fails with
//! [`Error::Denied`] (and the host reports the denial with the app's
//! component ID).
//!
//! The ABI mirrors `crates/sevenfold-compartment/src/hostapi/abi.rs`: every
//! function returns an `i32`, negative for an error code.

use std::fmt;

#[link(wasm_import_module = "sevenfold")]
extern "C" {
    fn gpio_write(pin: u32, level: u32) -> i32;
    fn gpio_read(pin: u32) -> i32;
    fn uart_open(name: *const u8, name_len: u32) -> i32;
    fn tcp_connect(host: *const u8, host_len: u32, port: u32) -> i32;
    fn tcp_listen(port: u32) -> i32;
    fn udp_connect(host: *const u8, host_len: u32, port: u32) -> i32;
    fn tcp_accept(listener: i32) -> i32;
    fn handle_write(handle: i32, buf: *const u8, len: u32) -> i32;
    fn handle_read(handle: i32, buf: *mut u8, len: u32) -> i32;
    fn handle_close(handle: i32) -> i32;
    fn channel_send(peer: *const u8, msg: *const u8, len: u32) -> i32;
    fn channel_recv(from: *mut u8, buf: *mut u8, len: u32) -> i32;
    fn device_certificate(buf: *mut u8, len: u32) -> i32;
    fn device_sign(msg: *const u8, msg_len: u32, sig: *mut u8, sig_len: u32) -> i32;
    fn should_stop() -> i32;
}

/// Why a host call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The manifest does not grant it (the host has reported the denial).
    Denied,
    /// A bad argument (pointer, length, handle, name).
    Invalid,
    /// The operation failed on the host (I/O error, peer gone, timeout).
    Io,
    /// Nothing to read yet.
    WouldBlock,
    /// No such pin, port or peer.
    NotFound,
    /// A code this version does not know.
    Other(i32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Denied => f.write_str("denied by the manifest"),
            Error::Invalid => f.write_str("invalid argument"),
            Error::Io => f.write_str("host I/O error"),
            Error::WouldBlock => f.write_str("nothing available yet"),
            Error::NotFound => f.write_str("not found"),
            Error::Other(code) => write!(f, "host error {code}"),
        }
    }
}

impl std::error::Error for Error {}

fn check(code: i32) -> Result<u32, Error> {
    match code {
        c if c >= 0 => Ok(c as u32),
        -1 => Err(Error::Denied),
        -2 => Err(Error::Invalid),
        -3 => Err(Error::Io),
        -4 => Err(Error::WouldBlock),
        -5 => Err(Error::NotFound),
        c => Err(Error::Other(c)),
    }
}

/// Drives a GPIO output pin high or low.
pub fn gpio_set(pin: u32, high: bool) -> Result<(), Error> {
    check(unsafe { gpio_write(pin, u32::from(high)) }).map(|_| ())
}

/// Reads a GPIO pin's level.
pub fn gpio_get(pin: u32) -> Result<bool, Error> {
    check(unsafe { gpio_read(pin) }).map(|v| v != 0)
}

/// Whether the supervisor asked this app to stop; a well-behaved app finishes
/// its work and returns from `main` within the grace period.
pub fn stop_requested() -> bool {
    unsafe { should_stop() == 1 }
}

/// An open host resource: a UART, a TCP connection or a TCP listener.
#[derive(Debug)]
pub struct Handle(i32);

impl Handle {
    /// Writes bytes; returns how many were written.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        check(unsafe { handle_write(self.0, data.as_ptr(), data.len() as u32) }).map(|n| n as usize)
    }

    /// Writes all of `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let n = self.write(data)?;
            if n == 0 {
                return Err(Error::Io);
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Reads into `buf`; 0 means the peer closed.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        check(unsafe { handle_read(self.0, buf.as_mut_ptr(), buf.len() as u32) }).map(|n| n as usize)
    }

    /// Accepts one connection on a listener (waits up to the host's timeout).
    pub fn accept(&self) -> Result<Handle, Error> {
        check(unsafe { tcp_accept(self.0) }).map(|h| Handle(h as i32))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe {
            handle_close(self.0);
        }
    }
}

/// Opens a UART by its manifest name (for example `ISU0`).
pub fn uart(name: &str) -> Result<Handle, Error> {
    check(unsafe { uart_open(name.as_ptr(), name.len() as u32) }).map(|h| Handle(h as i32))
}

/// Connects over TCP to `host` (a name the host resolves, or an IP literal)
/// and `port`; both must be in the manifest's `AllowedConnections`.
pub fn connect(host: &str, port: u16) -> Result<Handle, Error> {
    check(unsafe { tcp_connect(host.as_ptr(), host.len() as u32, u32::from(port)) })
        .map(|h| Handle(h as i32))
}

/// A UDP socket to `host:port` (which the manifest must allow, like a TCP
/// connection): each `write` sends one datagram there, each `read` receives
/// one from there.
pub fn udp(host: &str, port: u16) -> Result<Handle, Error> {
    check(unsafe { udp_connect(host.as_ptr(), host.len() as u32, u32::from(port)) })
        .map(|h| Handle(h as i32))
}

/// Listens on a TCP port listed in `AllowedTcpServerPorts`.
pub fn listen(port: u16) -> Result<Handle, Error> {
    check(unsafe { tcp_listen(u32::from(port)) }).map(|h| Handle(h as i32))
}

/// Sends a message to another app (by component ID, 16 bytes); both
/// manifests must list each other in `AllowedApplicationConnections`.
pub fn send_to(peer: &[u8; 16], msg: &[u8]) -> Result<(), Error> {
    check(unsafe { channel_send(peer.as_ptr(), msg.as_ptr(), msg.len() as u32) }).map(|_| ())
}

/// Takes the next message for this app, if any: (sender, length in `buf`).
pub fn receive(buf: &mut [u8]) -> Result<([u8; 16], usize), Error> {
    let mut from = [0u8; 16];
    let n = check(unsafe { channel_recv(from.as_mut_ptr(), buf.as_mut_ptr(), buf.len() as u32) })?;
    Ok((from, n as usize))
}

/// The device certificate chain (PEM), if the manifest grants
/// `DeviceAuthentication`. The private key never leaves the host.
pub fn certificate() -> Result<Vec<u8>, Error> {
    let needed = check(unsafe { device_certificate(std::ptr::null_mut(), 0) })? as usize;
    let mut buf = vec![0u8; needed];
    let n = check(unsafe { device_certificate(buf.as_mut_ptr(), buf.len() as u32) })? as usize;
    buf.truncate(n);
    Ok(buf)
}

/// Has the host sign `message` with the key of the device certificate
/// (ECDSA P-256 with SHA-256, DER): for a TLS handshake or a token the app
/// makes. Needs `DeviceAuthentication`; the key itself never reaches the app.
pub fn sign(message: &[u8]) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 80];
    loop {
        let n = check(unsafe {
            device_sign(message.as_ptr(), message.len() as u32, buf.as_mut_ptr(), buf.len() as u32)
        })? as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(n, 0);
    }
}

/// Parses a component ID written as a UUID (`xxxxxxxx-xxxx-…`) into 16 bytes.
pub fn component_id(uuid: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = uuid.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}
