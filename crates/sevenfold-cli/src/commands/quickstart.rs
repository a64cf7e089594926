//! `sevenfold quickstart`: the whole platform on one machine, in one command.
//!
//! Today it walks through what exists: signing keys, image packages, and a
//! device's software root of trust measuring and attesting what it runs.
//! The Security Service, updates, compartments and failure reporting join
//! this walk-through as they are built (see the issues).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use sevenfold_core::package::{read_package, Limits, TrustedKeys, UnverifiedPackage};
use sevenfold_rot::soft::SoftRoot;
use sevenfold_rot::{
    random_nonce, KeyAlgorithm, RootOfTrust, APPLICATION_REGISTER, RUNTIME_REGISTER,
};

use crate::cli::{OutputMode, QuickstartArgs};
use crate::commands::{image, keygen, package};
use crate::output::{emit, Render};
use crate::{files, SAMPLE_APPS};

#[derive(Serialize)]
struct PackagedApp {
    name: String,
    version: String,
    file: PathBuf,
    package_digest: String,
}

#[derive(Serialize)]
struct QuickstartReport {
    data_dir: PathBuf,
    signing_key_id: String,
    apps: Vec<PackagedApp>,
    device_id: String,
    runtime_measurement: String,
    quote_verified: bool,
    tampered_package_refused: String,
}

impl Render for QuickstartReport {
    fn human(&self) -> String {
        let mut s = format!(
            "Sevenfold quickstart in {}\n\n1. Signing key {} (renewable security: only signed software installs)\n",
            self.data_dir.display(),
            self.signing_key_id
        );
        s.push_str(
            "2. Packaged and verified the sample apps (defense in depth: signature, then hash):\n",
        );
        for app in &self.apps {
            s.push_str(&format!(
                "     {} {} -> {}\n       digest {}\n",
                app.name,
                app.version,
                app.file.display(),
                app.package_digest
            ));
        }
        s.push_str(&format!(
            "3. Device {} (software root of trust)\n   measured the runtime ({}) and every package into its registers\n",
            self.device_id, self.runtime_measurement
        ));
        s.push_str(&format!(
            "4. Quote over a fresh nonce verified against the device key: {}\n",
            if self.quote_verified { "yes" } else { "NO" }
        ));
        s.push_str(&format!(
            "5. A copy of the package with one byte changed was refused:\n     {}\n",
            self.tampered_package_refused
        ));
        s.push_str(
            "\nNext: inspect a package with `sevenfold image inspect FILE --public-key KEY.pub.pem`.\n",
        );
        s
    }
}

pub(crate) fn run(mode: OutputMode, args: &QuickstartArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !SAMPLE_APPS.is_empty(),
        "this sevenfold binary was built without its sample apps; \
         run `rustup target add wasm32-wasip1` and rebuild"
    );
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;

    // 1. The developer's signing key, made once and reused.
    let key_path = dir.join("keys/developer.pem");
    if !key_path.exists() {
        keygen::generate(&key_path, KeyAlgorithm::EcdsaP256, false)?;
    }
    let key = keygen::load_private(&key_path)?;
    let trusted: TrustedKeys = std::iter::once(key.public_key().clone()).collect();

    // 2. Package every sample app, then read each back from disk and verify it.
    let mut apps = Vec::new();
    let mut packages = Vec::new();
    for (name, manifest_json, wasm) in SAMPLE_APPS {
        let app_dir = dir.join("apps").join(name);
        let manifest_path = app_dir.join("app_manifest.json");
        files::write_new(&manifest_path, manifest_json, 0o644, true)?;
        files::write_new(&app_dir.join(format!("{name}.wasm")), wasm, 0o644, true)?;
        let manifest = package::load_manifest(&manifest_path)?;
        let out = dir
            .join("packages")
            .join(format!("{name}-{}.imagepackage", manifest.version()));
        package::build(&manifest, wasm, &key, &out, true)?;
        let verified = image::inspect_file(&out, &[key.public_key().clone()])?;
        anyhow::ensure!(
            matches!(verified.signature, image::SignatureCheck::Verified { .. }),
            "the package {} did not verify",
            out.display()
        );
        apps.push(PackagedApp {
            name: (*name).to_owned(),
            version: manifest.version().to_string(),
            file: out.clone(),
            package_digest: verified.package_digest,
        });
        packages.push(out);
    }

    // 3. A device: its root of trust measures the runtime, then each package.
    let device = open_or_create_device(&dir.join("device"))?;
    let runtime = std::env::current_exe().context("cannot find the running executable")?;
    let runtime_digest = sevenfold_rot::Digest::of(&files::read(&runtime)?);
    device.extend(RUNTIME_REGISTER, &runtime_digest)?;
    for path in &packages {
        let bytes = read_package(files::read(path)?.as_slice(), &Limits::default())?;
        let verified = UnverifiedPackage::parse(&bytes, &Limits::default())?.verify(&trusted)?;
        device.extend(APPLICATION_REGISTER, verified.package_digest())?;
    }

    // 4. Attestation in miniature: a verifier's nonce, the device's quote.
    let nonce = random_nonce()?;
    let (quote, registers) = device.quote(&nonce, &[RUNTIME_REGISTER, APPLICATION_REGISTER])?;
    quote
        .verify(device.device_public_key(), &nonce, &registers)
        .context("the device's quote did not verify")?;

    // 5. Defense in depth: a single changed byte is caught.
    let first = packages.first().context("no sample app was packaged")?;
    let tampered_refusal = tampered_copy_refusal(first, &trusted)?;

    let report = QuickstartReport {
        data_dir: dir.clone(),
        signing_key_id: key.public_key().key_id().to_hex(),
        apps,
        device_id: device.device_id().to_string(),
        runtime_measurement: runtime_digest.to_hex(),
        quote_verified: true,
        tampered_package_refused: tampered_refusal,
    };
    emit(mode, &report)?;
    Ok(ExitCode::SUCCESS)
}

fn open_or_create_device(state_dir: &Path) -> anyhow::Result<SoftRoot> {
    let root = match SoftRoot::open(state_dir) {
        Err(sevenfold_rot::RotError::NotInitialised(_)) => SoftRoot::create(state_dir),
        other => other,
    };
    root.with_context(|| {
        format!(
            "cannot set up the device root of trust in {}",
            state_dir.display()
        )
    })
}

/// Flips one payload byte of a copy and returns the verifier's refusal.
fn tampered_copy_refusal(path: &Path, trusted: &TrustedKeys) -> anyhow::Result<String> {
    let mut bytes = files::read(path)?;
    let middle = bytes.len() / 2;
    if let Some(b) = bytes.get_mut(middle) {
        *b ^= 0x01;
    }
    let outcome =
        UnverifiedPackage::parse(&bytes, &Limits::default()).and_then(|p| p.verify(trusted));
    match outcome {
        Ok(_) => anyhow::bail!("a tampered package verified; refusing to continue"),
        Err(e) => Ok(e.to_string()),
    }
}
