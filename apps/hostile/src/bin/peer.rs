//! Probes the doors to other apps and to the device identity: sends a
//! message to the app in `PEER` (a component ID), prints what arrives, and
//! asks for the device certificate and for a signature with its key.
use std::time::Duration;

fn main() {
    let me = std::env::var("NAME").unwrap_or_else(|_| "peer".into());
    if let Some(peer) = std::env::var("PEER").ok().and_then(|p| sevenfold_app::component_id(&p)) {
        let mut sent = sevenfold_app::send_to(&peer, format!("hello from {me}").as_bytes());
        for _ in 0..50 {
            if sent != Err(sevenfold_app::Error::NotFound) {
                break;
            }
            // The peer is not installed yet; wait for it a little.
            std::thread::sleep(Duration::from_millis(20));
            sent = sevenfold_app::send_to(&peer, format!("hello from {me}").as_bytes());
        }
        match sent {
            Ok(()) => println!("{me}: sent"),
            Err(e) => println!("{me}: send refused: {e}"),
        }
    }
    let mut buf = [0u8; 256];
    for _ in 0..100 {
        match sevenfold_app::receive(&mut buf) {
            Ok((_, n)) => {
                println!("{me}: received '{}'", String::from_utf8_lossy(&buf[..n]));
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    match sevenfold_app::certificate() {
        Ok(pem) => println!("{me}: certificate of {} bytes", pem.len()),
        Err(e) => println!("{me}: certificate refused: {e}"),
    }
    match sevenfold_app::sign(b"sevenfold device authentication") {
        Ok(signature) => {
            let hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
            println!("{me}: signature {hex}");
        }
        Err(e) => println!("{me}: signing refused: {e}"),
    }
}
