//! `blink`: the "hello world" of Sevenfold. Toggles the LED on GPIO 8 through
//! the compartment host's peripheral API, and reports each toggle on
//! standard output (which the runtime captures as the app's log).
//!
//! Runs until the supervisor asks it to stop, or for `BLINK_TOGGLES` toggles
//! when that is set.

use std::time::Duration;

/// The pin granted in `app_manifest.json` (`Capabilities.Gpio`).
const LED_PIN: u32 = 8;

fn main() {
    let toggles: Option<u32> = std::env::var("BLINK_TOGGLES")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut on = false;
    let mut count: u32 = 0;
    while toggles.map_or(true, |t| count < t) && !sevenfold_app::stop_requested() {
        on = !on;
        if let Err(e) = sevenfold_app::gpio_set(LED_PIN, on) {
            eprintln!("blink: GPIO {LED_PIN}: {e}");
            std::process::exit(1);
        }
        count += 1;
        println!("blink: GPIO {LED_PIN} {} ({count})", if on { "high" } else { "low" });
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("blink: done after {count} toggles");
}
