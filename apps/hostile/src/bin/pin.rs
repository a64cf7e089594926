//! Drives a pin and opens a UART its manifest does not grant.
fn main() {
    match sevenfold_app::gpio_set(13, true) {
        Ok(()) => println!("hostile-pin: DROVE GPIO 13"),
        Err(e) => println!("hostile-pin: GPIO 13: {e}"),
    }
    match sevenfold_app::uart("ISU3") {
        Ok(_) => println!("hostile-pin: OPENED ISU3"),
        Err(e) => println!("hostile-pin: ISU3: {e}"),
    }
}
