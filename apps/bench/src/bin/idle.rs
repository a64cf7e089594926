//! An idle app: waits until asked to stop (or returns at once with
//! `IDLE_EXIT=1`, to time a start).
fn main() {
    if std::env::var("IDLE_EXIT").is_ok() {
        return;
    }
    while !sevenfold_app::stop_requested() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
