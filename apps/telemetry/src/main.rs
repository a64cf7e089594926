//! `telemetry`: sends one reading per line to the collector named in
//! `TELEMETRY_TARGET` (`host:port`, default `localhost:7878`), over TCP
//! through the compartment host, which allows only the manifest's
//! `AllowedConnections`. Reconnects after a failure; runs until asked to stop.
//! With `TELEMETRY_PROTOCOL=udp` each reading is one UDP datagram instead.

use std::time::Duration;

fn main() {
    let target = std::env::var("TELEMETRY_TARGET").unwrap_or_else(|_| "localhost:7878".into());
    let (host, port) = match target.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse().ok()?))) {
        Some(parts) => parts,
        None => {
            eprintln!("telemetry: TELEMETRY_TARGET '{target}' is not host:port");
            std::process::exit(2);
        }
    };
    let mut reading: u32 = 0;
    if std::env::var("TELEMETRY_PROTOCOL").as_deref() == Ok("udp") {
        match sevenfold_app::udp(host, port) {
            Ok(mut socket) => {
                println!("telemetry: udp to {host}:{port}");
                while !sevenfold_app::stop_requested() {
                    reading += 1;
                    let datagram = format!("reading {reading} temperature {}", 20 + reading % 7);
                    match socket.write(datagram.as_bytes()) {
                        Ok(_) => println!("telemetry: sent reading {reading}"),
                        Err(e) => eprintln!("telemetry: send failed: {e}"),
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
            Err(e) => println!("telemetry: udp to {host}:{port} refused: {e}"),
        }
        println!("telemetry: stopped after {reading} readings");
        return;
    }
    while !sevenfold_app::stop_requested() {
        match sevenfold_app::connect(host, port) {
            Ok(mut conn) => {
                println!("telemetry: connected to {host}:{port}");
                while !sevenfold_app::stop_requested() {
                    reading += 1;
                    let line = format!("reading {reading} temperature {}\n", 20 + reading % 7);
                    if let Err(e) = conn.write_all(line.as_bytes()) {
                        eprintln!("telemetry: send failed: {e}");
                        break;
                    }
                    println!("telemetry: sent reading {reading}");
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
            Err(e) => eprintln!("telemetry: cannot connect to {host}:{port}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("telemetry: stopped after {reading} readings");
}
