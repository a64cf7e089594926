//! Drives a pin and opens a UART its manifest does not grant
//! (`PIN_ATTEMPTS` times for the pin: a loop on a closed door).
fn main() {
    let attempts: u32 = std::env::var("PIN_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for _ in 0..attempts {
        match sevenfold_app::gpio_set(13, true) {
            Ok(()) => println!("hostile-pin: DROVE GPIO 13"),
            Err(e) => println!("hostile-pin: GPIO 13: {e}"),
        }
    }
    match sevenfold_app::uart("ISU3") {
        Ok(_) => println!("hostile-pin: OPENED ISU3"),
        Err(e) => println!("hostile-pin: ISU3: {e}"),
    }
}
