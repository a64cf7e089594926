//! `blink`: the "hello world" of Sevenfold. Toggles the LED on GPIO 8.
//!
//! Until the compartment host exposes its peripheral API, the app keeps the
//! LED state itself and reports each toggle on standard output, which the
//! runtime captures as the app's log.

use std::time::Duration;

/// The pin granted in `app_manifest.json` (`Capabilities.Gpio`).
const LED_PIN: u32 = 8;

fn main() {
    let toggles: u32 = std::env::var("BLINK_TOGGLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut on = false;
    for _ in 0..toggles {
        on = !on;
        println!("blink: GPIO {LED_PIN} {}", if on { "high" } else { "low" });
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("blink: done after {toggles} toggles");
}
