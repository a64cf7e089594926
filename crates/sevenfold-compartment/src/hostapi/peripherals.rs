//! Peripheral backends behind the host API: GPIO pins and UARTs (room for
//! I2C, SPI, ADC and PWM later). The host checks the manifest before a
//! backend is called; a backend only knows how to drive hardware.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// Drives the board's peripherals.
pub trait Peripherals: Send + Sync {
    /// Drives GPIO `pin` high or low (making it an output first if needed).
    ///
    /// # Errors
    /// The backend's I/O error.
    fn gpio_write(&self, pin: u32, high: bool) -> io::Result<()>;

    /// Reads GPIO `pin`.
    ///
    /// # Errors
    /// The backend's I/O error.
    fn gpio_read(&self, pin: u32) -> io::Result<bool>;

    /// Opens the UART called `name` (a manifest name such as `ISU0`).
    ///
    /// # Errors
    /// `NotFound` for an unknown name, or the backend's I/O error.
    fn uart_open(&self, name: &str) -> io::Result<Box<dyn UartPort>>;
}

/// An open serial port.
pub trait UartPort: Send {
    /// Writes bytes; returns how many were taken.
    ///
    /// # Errors
    /// The backend's I/O error.
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;

    /// Reads what has arrived (0 bytes when nothing has).
    ///
    /// # Errors
    /// The backend's I/O error.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// Simulated peripherals for tests and development machines: pins keep
/// their level and count their changes; each UART is a loopback whose
/// transmitted bytes are kept for inspection.
#[derive(Debug, Default, Clone)]
pub struct SimulatedPeripherals {
    inner: Arc<Mutex<Simulated>>,
}

#[derive(Debug, Default)]
struct Simulated {
    pins: HashMap<u32, bool>,
    toggles: HashMap<u32, u64>,
    uarts: HashMap<String, VecDeque<u8>>,
}

impl SimulatedPeripherals {
    /// Peripherals with every pin low and every UART empty.
    pub fn new() -> SimulatedPeripherals {
        SimulatedPeripherals::default()
    }

    /// How many times `pin` changed level.
    pub fn toggles(&self, pin: u32) -> u64 {
        let sim = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        sim.toggles.get(&pin).copied().unwrap_or(0)
    }

    /// The level of `pin`.
    pub fn level(&self, pin: u32) -> bool {
        let sim = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        sim.pins.get(&pin).copied().unwrap_or(false)
    }

    /// Pins that were ever driven.
    pub fn driven_pins(&self) -> Vec<u32> {
        let sim = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pins: Vec<u32> = sim.pins.keys().copied().collect();
        pins.sort_unstable();
        pins
    }
}

impl Peripherals for SimulatedPeripherals {
    fn gpio_write(&self, pin: u32, high: bool) -> io::Result<()> {
        let mut sim = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let before = sim.pins.insert(pin, high).unwrap_or(false);
        if before != high {
            *sim.toggles.entry(pin).or_insert(0) += 1;
        }
        Ok(())
    }

    fn gpio_read(&self, pin: u32) -> io::Result<bool> {
        Ok(self.level(pin))
    }

    fn uart_open(&self, name: &str) -> io::Result<Box<dyn UartPort>> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .uarts
            .entry(name.to_owned())
            .or_default();
        Ok(Box::new(SimulatedUart {
            name: name.to_owned(),
            inner: Arc::clone(&self.inner),
        }))
    }
}

struct SimulatedUart {
    name: String,
    inner: Arc<Mutex<Simulated>>,
}

impl UartPort for SimulatedUart {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut sim = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = sim.uarts.entry(self.name.clone()).or_default();
        let room = (64 * 1024usize).saturating_sub(queue.len());
        let take = data.len().min(room);
        queue.extend(data.iter().take(take));
        Ok(take)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut sim = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = sim.uarts.entry(self.name.clone()).or_default();
        let n = buf.len().min(queue.len());
        for (slot, byte) in buf.iter_mut().zip(queue.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

/// Real boards on Linux: GPIO through the sysfs interface
/// (`/sys/class/gpio`), UARTs as character devices named in the
/// configuration (`ISU0` → `/dev/ttyS0`).
///
/// The GPIO character device (`/dev/gpiochipN`) needs ioctls, which the
/// workspace's `forbid(unsafe_code)` rules out here; sysfs is deprecated but
/// still built into most board kernels. Serial line settings (baud rate) are
/// left as the board configures them (`stty` or device tree), for the same
/// reason.
#[derive(Debug, Clone)]
pub struct LinuxPeripherals {
    gpio_root: PathBuf,
    uarts: HashMap<String, PathBuf>,
}

impl LinuxPeripherals {
    /// GPIO under `gpio_root` (normally `/sys/class/gpio`), UARTs by name.
    pub fn new(gpio_root: PathBuf, uarts: HashMap<String, PathBuf>) -> LinuxPeripherals {
        LinuxPeripherals { gpio_root, uarts }
    }

    fn pin_dir(&self, pin: u32) -> io::Result<PathBuf> {
        let dir = self.gpio_root.join(format!("gpio{pin}"));
        if !dir.exists() {
            let mut export = OpenOptions::new()
                .write(true)
                .open(self.gpio_root.join("export"))?;
            export.write_all(pin.to_string().as_bytes())?;
        }
        Ok(dir)
    }
}

impl Peripherals for LinuxPeripherals {
    fn gpio_write(&self, pin: u32, high: bool) -> io::Result<()> {
        let dir = self.pin_dir(pin)?;
        std::fs::write(dir.join("direction"), if high { "high" } else { "low" })
    }

    fn gpio_read(&self, pin: u32) -> io::Result<bool> {
        let dir = self.pin_dir(pin)?;
        let value = std::fs::read_to_string(dir.join("value"))?;
        Ok(value.trim() == "1")
    }

    fn uart_open(&self, name: &str) -> io::Result<Box<dyn UartPort>> {
        let path = self.uarts.get(name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no device for UART {name}"),
            )
        })?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(DeviceUart(file)))
    }
}

struct DeviceUart(File);

impl UartPort for DeviceUart {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.write(data)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_gpio_exports_and_drives_a_pin() {
        // A stand-in sysfs tree: the kernel would create gpio5/ on export.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("export"), "").unwrap();
        std::fs::create_dir(tmp.path().join("gpio5")).unwrap();
        std::fs::write(tmp.path().join("gpio5/value"), "1\n").unwrap();
        let linux = LinuxPeripherals::new(tmp.path().to_path_buf(), HashMap::new());
        linux.gpio_write(5, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("gpio5/direction")).unwrap(),
            "high"
        );
        assert!(linux.gpio_read(5).unwrap());
        // An unexported pin is exported first.
        let _ = linux.gpio_write(6, false);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("export")).unwrap(),
            "6"
        );
        assert_eq!(
            linux.uart_open("ISU0").err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn simulated_uart_loops_back() {
        let sim = SimulatedPeripherals::new();
        let mut port = sim.uart_open("ISU0").unwrap();
        assert_eq!(port.write(b"hello").unwrap(), 5);
        let mut buf = [0u8; 8];
        assert_eq!(port.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        sim.gpio_write(8, true).unwrap();
        sim.gpio_write(8, true).unwrap();
        sim.gpio_write(8, false).unwrap();
        assert_eq!(sim.toggles(8), 2);
    }
}
