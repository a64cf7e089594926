//! Connects to hosts its manifest does not allow (a name and an IP literal).
fn main() {
    for (host, port) in [("example.com", 80), ("127.0.0.1", 9), ("localhost", 1)] {
        match sevenfold_app::connect(host, port) {
            Ok(_) => println!("hostile-host: CONNECTED to {host}:{port}"),
            Err(e) => println!("hostile-host: {host}:{port} refused: {e}"),
        }
    }
}
