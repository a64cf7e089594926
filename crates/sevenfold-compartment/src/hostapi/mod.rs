//! The host API: the import module `sevenfold`, through which an app reaches
//! whatever its manifest grants beyond WASI — GPIO, UARTs, TCP, channels to
//! other apps, the device certificate — and learns that it should stop.
//!
//! Every call is checked against the app's [`AppPolicy`](crate::AppPolicy)
//! first; one that is not granted returns [`abi::DENIED`] to the app and is
//! reported as a [`CompartmentEvent::Denied`]. Pointers and lengths from the
//! app are bounds-checked; a bad one is [`abi::INVALID`], never a host panic.

pub mod abi;
pub(crate) mod channels;
mod net;
pub(crate) mod peripherals;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;
use wasmtime::{Caller, Linker};

use crate::events::{Capability, CompartmentEvent};
use crate::guest;
use crate::state::AppState;
use channels::{ChannelError, ChannelHub};
use peripherals::{Peripherals, UartPort};

/// Most handles (UARTs, connections, listeners) an app may hold at once.
pub const MAX_HANDLES: usize = 16;
/// Largest single read or write through a handle.
const MAX_IO: usize = 64 * 1024;

/// What the host gives every app access to (each subject to its manifest).
pub struct HostServices {
    /// The board's peripherals.
    pub peripherals: Arc<dyn Peripherals>,
    /// The switchboard for app-to-app channels.
    pub channels: ChannelHub,
    /// The device certificate chain (PEM) apps with `DeviceAuthentication`
    /// may read; the private key is never reachable.
    pub certificate: Option<PathBuf>,
    /// Signs for apps with `DeviceAuthentication` with the key the device
    /// certificate certifies (for a TLS handshake or a token the app makes);
    /// the key stays with the host.
    pub signer: Option<Arc<dyn DeviceSigner>>,
    /// The address listeners bind to.
    pub listen_ip: IpAddr,
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices")
            .field("certificate", &self.certificate)
            .field("signer", &self.signer.is_some())
            .field("listen_ip", &self.listen_ip)
            .finish_non_exhaustive()
    }
}

/// Signs with the device certificate's key on an app's behalf.
pub trait DeviceSigner: Send + Sync {
    /// A signature over `message` (ECDSA P-256 with SHA-256, DER, for the
    /// keys Sevenfold devices use), or why there is none.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

/// Longest message an app may have signed in one call.
pub const MAX_SIGNED_MESSAGE: usize = 64 * 1024;

/// An open resource of one app.
pub(crate) enum Resource {
    Uart(Box<dyn UartPort>),
    Tcp(TcpStream),
    Udp(UdpSocket),
    Listener(TcpListener),
}

/// One app's handle table.
#[derive(Default)]
pub(crate) struct Handles {
    open: HashMap<i32, Resource>,
    next: i32,
}

impl Handles {
    fn insert(&mut self, resource: Resource) -> i32 {
        if self.open.len() >= MAX_HANDLES {
            return abi::INVALID;
        }
        self.next = self.next.checked_add(1).unwrap_or(1);
        while self.open.contains_key(&self.next) {
            self.next = self.next.checked_add(1).unwrap_or(1);
        }
        self.open.insert(self.next, resource);
        self.next
    }
}

fn deny(caller: &Caller<'_, AppState>, capability: Capability, detail: String) -> i32 {
    let control = &caller.data().control;
    control.emit(CompartmentEvent::Denied {
        app: control.id().clone(),
        capability,
        detail,
    });
    abi::DENIED
}

fn io_code(e: &io::Error) -> i32 {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => abi::WOULD_BLOCK,
        io::ErrorKind::NotFound => abi::NOT_FOUND,
        _ => abi::IO,
    }
}

fn read_str(caller: &mut Caller<'_, AppState>, ptr: i32, len: i32, max: usize) -> Option<String> {
    let memory = guest::memory(caller)?;
    let bytes = guest::read(&memory, &*caller, ptr, len, max)?;
    String::from_utf8(bytes).ok()
}

/// The `host:port` an app asks to reach, if the manifest's
/// `AllowedConnections` grants it; otherwise the code to return (a bad
/// argument, or a denial reported as `{what}{host}:{port}`).
fn allowed_target(
    caller: &mut Caller<'_, AppState>,
    ptr: i32,
    len: i32,
    port_value: u32,
    what: &str,
) -> Result<(String, u16), i32> {
    let (Some(host), Some(port)) = (read_str(caller, ptr, len, 255), port(port_value)) else {
        return Err(abi::INVALID);
    };
    if !caller.data().policy.may_connect(&host, port) {
        return Err(deny(
            caller,
            Capability::AllowedConnections,
            format!("{what}{host}:{port}"),
        ));
    }
    Ok((host, port))
}

fn port(value: u32) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p != 0)
}

/// Adds the `sevenfold` module to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<AppState>) -> wasmtime::Result<()> {
    let m = abi::MODULE;
    linker.func_wrap(m, "should_stop", |caller: Caller<'_, AppState>| {
        i32::from(caller.data().control.stop_requested())
    })?;
    linker.func_wrap(
        m,
        "gpio_write",
        |caller: Caller<'_, AppState>, pin: u32, level: u32| {
            let state = caller.data();
            if !state.policy.may_use_gpio(pin) {
                return deny(&caller, Capability::Gpio, format!("GPIO pin {pin}"));
            }
            match state.services.peripherals.gpio_write(pin, level != 0) {
                Ok(()) => abi::OK,
                Err(e) => io_code(&e),
            }
        },
    )?;
    linker.func_wrap(m, "gpio_read", |caller: Caller<'_, AppState>, pin: u32| {
        let state = caller.data();
        if !state.policy.may_use_gpio(pin) {
            return deny(&caller, Capability::Gpio, format!("GPIO pin {pin}"));
        }
        match state.services.peripherals.gpio_read(pin) {
            Ok(level) => i32::from(level),
            Err(e) => io_code(&e),
        }
    })?;
    linker.func_wrap(
        m,
        "uart_open",
        |mut caller: Caller<'_, AppState>, ptr: i32, len: i32| {
            let Some(name) = read_str(&mut caller, ptr, len, 64) else {
                return abi::INVALID;
            };
            if !caller.data().policy.may_use_uart(&name) {
                return deny(&caller, Capability::Uart, format!("UART '{name}'"));
            }
            let state = caller.data_mut();
            match state.services.peripherals.uart_open(&name) {
                Ok(port) => state.handles.insert(Resource::Uart(port)),
                Err(e) => io_code(&e),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "tcp_connect",
        |mut caller: Caller<'_, AppState>, ptr: i32, len: i32, port_value: u32| {
            let (host, port) = match allowed_target(&mut caller, ptr, len, port_value, "") {
                Ok(target) => target,
                Err(code) => return code,
            };
            match net::connect(&host, port) {
                Ok(stream) => caller.data_mut().handles.insert(Resource::Tcp(stream)),
                Err(e) => {
                    tracing::debug!(%host, port, error = %e, "app connection failed");
                    abi::IO
                }
            }
        },
    )?;
    linker.func_wrap(
        m,
        "udp_connect",
        |mut caller: Caller<'_, AppState>, ptr: i32, len: i32, port_value: u32| {
            let (host, port) = match allowed_target(&mut caller, ptr, len, port_value, "udp ") {
                Ok(target) => target,
                Err(code) => return code,
            };
            match net::udp_connect(&host, port) {
                Ok(socket) => caller.data_mut().handles.insert(Resource::Udp(socket)),
                Err(e) => {
                    tracing::debug!(%host, port, error = %e, "app UDP socket failed");
                    abi::IO
                }
            }
        },
    )?;
    linker.func_wrap(
        m,
        "tcp_listen",
        |mut caller: Caller<'_, AppState>, port_value: u32| {
            let Some(port) = port(port_value) else {
                return abi::INVALID;
            };
            if !caller.data().policy.may_listen(port) {
                return deny(
                    &caller,
                    Capability::AllowedTcpServerPorts,
                    format!("listen on port {port}"),
                );
            }
            let ip = caller.data().services.listen_ip;
            match net::listen(ip, port) {
                Ok(listener) => caller
                    .data_mut()
                    .handles
                    .insert(Resource::Listener(listener)),
                Err(e) => io_code(&e),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "tcp_accept",
        |mut caller: Caller<'_, AppState>, handle: i32| {
            let handles = &mut caller.data_mut().handles;
            let accepted = match handles.open.get(&handle) {
                Some(Resource::Listener(listener)) => net::accept(listener),
                _ => return abi::INVALID,
            };
            match accepted {
                Ok(stream) => handles.insert(Resource::Tcp(stream)),
                Err(e) => io_code(&e),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "handle_write",
        |mut caller: Caller<'_, AppState>, handle: i32, ptr: i32, len: i32| {
            let Some(memory) = guest::memory(&mut caller) else {
                return abi::INVALID;
            };
            let Some(data) = guest::read(&memory, &caller, ptr, len, MAX_IO) else {
                return abi::INVALID;
            };
            let written = match caller.data_mut().handles.open.get_mut(&handle) {
                Some(Resource::Uart(port)) => port.write(&data),
                Some(Resource::Tcp(stream)) => net::write(stream, &data),
                Some(Resource::Udp(socket)) => socket.send(&data),
                _ => return abi::INVALID,
            };
            match written {
                Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
                Err(e) => io_code(&e),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "handle_read",
        |mut caller: Caller<'_, AppState>, handle: i32, ptr: i32, len: i32| {
            let Some(room) = guest::address(len) else {
                return abi::INVALID;
            };
            let mut buf = vec![0u8; room.min(MAX_IO)];
            let read = match caller.data_mut().handles.open.get_mut(&handle) {
                Some(Resource::Uart(port)) => port.read(&mut buf),
                Some(Resource::Tcp(stream)) => net::read(stream, &mut buf),
                Some(Resource::Udp(socket)) => socket.recv(&mut buf),
                _ => return abi::INVALID,
            };
            match read {
                Ok(n) => {
                    let Some(memory) = guest::memory(&mut caller) else {
                        return abi::INVALID;
                    };
                    match guest::write(&memory, &mut caller, ptr, buf.get(..n).unwrap_or_default())
                    {
                        Some(()) => i32::try_from(n).unwrap_or(i32::MAX),
                        None => abi::INVALID,
                    }
                }
                Err(e) => io_code(&e),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "handle_close",
        |mut caller: Caller<'_, AppState>, handle: i32| match caller
            .data_mut()
            .handles
            .open
            .remove(&handle)
        {
            Some(_) => abi::OK,
            None => abi::INVALID,
        },
    )?;
    linker.func_wrap(
        m,
        "channel_send",
        |mut caller: Caller<'_, AppState>, peer_ptr: i32, ptr: i32, len: i32| {
            let Some(memory) = guest::memory(&mut caller) else {
                return abi::INVALID;
            };
            let peer = guest::read(&memory, &caller, peer_ptr, 16, 16)
                .and_then(|b| Uuid::from_slice(&b).ok());
            let message = guest::read(&memory, &caller, ptr, len, channels::MAX_MESSAGE);
            let (Some(peer), Some(message)) = (peer, message) else {
                return abi::INVALID;
            };
            let state = caller.data();
            let me = state.control.id().component_id;
            match state.services.channels.send(me, peer, message) {
                Ok(()) => abi::OK,
                Err(ChannelError::Denied) => deny(
                    &caller,
                    Capability::AllowedApplicationConnections,
                    format!("channel to {peer}"),
                ),
                Err(ChannelError::UnknownPeer) => abi::NOT_FOUND,
                Err(ChannelError::Full) => abi::WOULD_BLOCK,
            }
        },
    )?;
    linker.func_wrap(
        m,
        "channel_recv",
        |mut caller: Caller<'_, AppState>, from_ptr: i32, ptr: i32, len: i32| {
            let Some(room) = guest::address(len) else {
                return abi::INVALID;
            };
            let me = caller.data().control.id().component_id;
            let (from, message) = match caller.data().services.channels.receive(me, room) {
                Ok(Some(m)) => m,
                Ok(None) => return abi::WOULD_BLOCK,
                Err(_) => return abi::INVALID,
            };
            let Some(memory) = guest::memory(&mut caller) else {
                return abi::INVALID;
            };
            let wrote = guest::write(&memory, &mut caller, from_ptr, from.as_bytes())
                .and_then(|()| guest::write(&memory, &mut caller, ptr, &message));
            match wrote {
                Some(()) => i32::try_from(message.len()).unwrap_or(i32::MAX),
                None => abi::INVALID,
            }
        },
    )?;
    linker.func_wrap(
        m,
        "device_certificate",
        |mut caller: Caller<'_, AppState>, ptr: i32, len: i32| {
            if !caller.data().policy.device_authentication() {
                return deny(
                    &caller,
                    Capability::DeviceAuthentication,
                    "device certificate".into(),
                );
            }
            let Some(path) = caller.data().services.certificate.clone() else {
                return abi::NOT_FOUND;
            };
            let pem = match std::fs::read(&path) {
                Ok(pem) => pem,
                Err(e) => return io_code(&e),
            };
            let Some(room) = guest::address(len) else {
                return abi::INVALID;
            };
            let needed = i32::try_from(pem.len()).unwrap_or(i32::MAX);
            if room < pem.len() {
                return needed;
            }
            let Some(memory) = guest::memory(&mut caller) else {
                return abi::INVALID;
            };
            match guest::write(&memory, &mut caller, ptr, &pem) {
                Some(()) => needed,
                None => abi::INVALID,
            }
        },
    )?;
    linker.func_wrap(
        m,
        "device_sign",
        |mut caller: Caller<'_, AppState>, msg: i32, msg_len: i32, sig: i32, sig_len: i32| {
            if !caller.data().policy.device_authentication() {
                return deny(
                    &caller,
                    Capability::DeviceAuthentication,
                    "signing with the device key".into(),
                );
            }
            let Some(signer) = caller.data().services.signer.clone() else {
                return abi::NOT_FOUND;
            };
            let Some(room) = guest::address(sig_len) else {
                return abi::INVALID;
            };
            let Some(memory) = guest::memory(&mut caller) else {
                return abi::INVALID;
            };
            let Some(message) = guest::read(&memory, &caller, msg, msg_len, MAX_SIGNED_MESSAGE)
            else {
                return abi::INVALID;
            };
            let signature = match signer.sign(&message) {
                Ok(signature) => signature,
                Err(e) => {
                    tracing::warn!(app = %caller.data().control.id(), error = %e, "device signing failed");
                    return abi::IO;
                }
            };
            let needed = i32::try_from(signature.len()).unwrap_or(i32::MAX);
            if room < signature.len() {
                return needed;
            }
            match guest::write(&memory, &mut caller, sig, &signature) {
                Some(()) => needed,
                None => abi::INVALID,
            }
        },
    )?;
    Ok(())
}
