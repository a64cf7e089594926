//! Listens on `ECHO_PORT` and echoes one line back; then writes to the UART
//! named in `UART` (if set) and reads back what arrives (the simulated UART
//! loops back).
use std::time::{Duration, Instant};

fn main() {
    let port: u16 = std::env::var("ECHO_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    match sevenfold_app::listen(port) {
        Err(e) => println!("echo: listen on {port} refused: {e}"),
        Ok(listener) => {
            println!("echo: listening on {port}");
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut conn = loop {
                match listener.accept() {
                    Ok(conn) => break Some(conn),
                    Err(sevenfold_app::Error::WouldBlock) if Instant::now() < deadline => continue,
                    Err(e) => {
                        println!("echo: accept failed: {e}");
                        break None;
                    }
                }
            };
            if let Some(conn) = conn.as_mut() {
                let mut buf = [0u8; 256];
                let mut line = Vec::new();
                while !line.ends_with(b"\n") && Instant::now() < deadline {
                    match conn.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => line.extend_from_slice(&buf[..n]),
                        Err(sevenfold_app::Error::WouldBlock) => continue,
                        Err(e) => {
                            println!("echo: read failed: {e}");
                            break;
                        }
                    }
                }
                let _ = conn.write_all(&line);
                println!("echo: echoed {} bytes", line.len());
            }
        }
    }
    if let Ok(name) = std::env::var("UART") {
        match sevenfold_app::uart(&name) {
            Ok(mut port) => {
                let _ = port.write_all(b"hello uart");
                let mut buf = [0u8; 32];
                let n = port.read(&mut buf).unwrap_or(0);
                println!("echo: {name} answered '{}'", String::from_utf8_lossy(&buf[..n]));
            }
            Err(e) => println!("echo: {name} refused: {e}"),
        }
    }
}
