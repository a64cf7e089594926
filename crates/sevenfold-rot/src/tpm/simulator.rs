//! A TPM 2.0 simulator process (swtpm) for tests and development.
//!
//! [`Swtpm::start`] manufactures a fresh TPM with `swtpm_setup` (EK
//! certificates issued by a private CA of its own, as a TPM maker's CA
//! would), then runs `swtpm socket` on free loopback ports and returns once
//! it answers. Dropping the [`Swtpm`] kills the process and deletes its
//! state. Nothing here is used by the agent itself; it lives in the crate so
//! every crate's tests share one copy.

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the simulator may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a start is retried when its ports were taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// A running swtpm; killed, and its state deleted, on drop.
#[derive(Debug)]
pub struct Swtpm {
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
}

impl Swtpm {
    /// Manufactures a new TPM (EK and platform certificates included) and
    /// starts it; needs `swtpm` and `swtpm_setup` (Debian: swtpm, swtpm-tools).
    pub fn start() -> io::Result<Swtpm> {
        let dir = unique_dir()?;
        let mut sim = Swtpm {
            dir,
            child: None,
            port: 0,
        };
        sim.manufacture()?;
        sim.launch()?;
        Ok(sim)
    }

    /// The TCTI string for this simulator.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The directory of the private CA that issued the EK certificates
    /// (`swtpm-localca-rootca-cert.pem`, `issuercert.pem`): the "TPM maker".
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    /// Power-cycles the TPM: kills the process (PCRs are lost, NV state
    /// kept) and starts it again, possibly on other ports (see [`Swtpm::tcti`]).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.launch()
    }

    fn manufacture(&self) -> io::Result<()> {
        let ca = self.ca_dir();
        let state = self.dir.join("state");
        std::fs::create_dir_all(&ca)?;
        std::fs::create_dir_all(&state)?;
        let localca = self.dir.join("localca.conf");
        std::fs::write(
            &localca,
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\n\
                 issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca.display()
            ),
        )?;
        let setup = self.dir.join("swtpm_setup.conf");
        std::fs::write(
            &setup,
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\n\
                 create_certs_tool_config = {}\n\
                 create_certs_tool_options = /etc/swtpm-localca.options\n\
                 active_pcr_banks = sha256\n",
                localca.display()
            ),
        )?;
        let output = Command::new("swtpm_setup")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(&state)
            .args(["--create-ek-cert", "--create-platform-cert", "--config"])
            .arg(&setup)
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "swtpm_setup failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(())
    }

    fn launch(&mut self) -> io::Result<()> {
        let mut last_error = io::Error::other("swtpm did not start");
        for _ in 0..START_ATTEMPTS {
            let port = free_port_pair()?;
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--server"])
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", self.dir.join("state").display()))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            match wait_until_listening(&mut child, port) {
                Ok(()) => {
                    self.child = Some(child);
                    self.port = port;
                    return Ok(());
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The simulator's own directory (state, CA, configuration).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_until_listening(child: &mut Child, port: u16) -> io::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("swtpm exited with {status}")));
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "swtpm did not accept connections in time",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port P such that P and P+1 were both free a moment ago.
fn free_port_pair() -> io::Result<u16> {
    for _ in 0..50 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        if port < u16::MAX && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no two adjacent free loopback ports"))
}

fn unique_dir() -> io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "sevenfold-swtpm-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}
