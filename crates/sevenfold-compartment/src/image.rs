//! [`AppImage`]: what a compartment starts — a manifest, its wasm payload and
//! the package digest that boot measured.

use std::path::Path;
use std::sync::Arc;

use sevenfold_core::manifest::{AppManifest, ImageType};
use sevenfold_core::package::{read_package, Limits, UnverifiedPackage};
use sevenfold_rot::Digest;

use crate::error::CompartmentError;

/// An application image ready to run.
#[derive(Debug, Clone)]
pub struct AppImage {
    manifest: AppManifest,
    wasm: Arc<[u8]>,
    digest: Digest,
    env: Vec<(String, String)>,
}

impl AppImage {
    /// Loads the package at `path` and checks that it is still the package
    /// boot verified and measured (`measured`): the compartment runs nothing
    /// but what the root of trust recorded. The signature was checked at
    /// boot, and the digest covers everything it signed.
    ///
    /// # Errors
    /// [`CompartmentError::Io`], [`CompartmentError::Package`],
    /// [`CompartmentError::DigestMismatch`], or
    /// [`CompartmentError::NotAnApplication`] for a runtime image.
    pub fn load_measured(path: &Path, measured: &Digest) -> Result<AppImage, CompartmentError> {
        let limits = Limits::default();
        let file = std::fs::File::open(path).map_err(|e| CompartmentError::io("open", path, e))?;
        let bytes = read_package(file, &limits)?;
        let package = UnverifiedPackage::parse(&bytes, &limits)?;
        let found = package.package_digest();
        if found != *measured {
            return Err(CompartmentError::DigestMismatch {
                path: path.to_path_buf(),
                measured: measured.to_hex(),
                found: found.to_hex(),
            });
        }
        AppImage::new(package.manifest().clone(), package.payload(), found)
    }

    /// An image from its parts (tests, benchmarks, sideloading after the
    /// caller verified the package). `digest` keys the module cache.
    ///
    /// # Errors
    /// [`CompartmentError::NotAnApplication`] unless the manifest is an application's.
    pub fn new(
        manifest: AppManifest,
        wasm: &[u8],
        digest: Digest,
    ) -> Result<AppImage, CompartmentError> {
        if manifest.image_type() != ImageType::Application {
            return Err(CompartmentError::NotAnApplication {
                name: manifest.name().to_owned(),
                image_type: manifest.image_type().as_str(),
            });
        }
        Ok(AppImage {
            manifest,
            wasm: Arc::from(wasm),
            digest,
            env: Vec::new(),
        })
    }

    /// Adds an environment variable the app sees (device configuration such
    /// as a collector's address; never a secret).
    #[must_use]
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> AppImage {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The manifest.
    pub fn manifest(&self) -> &AppManifest {
        &self.manifest
    }

    /// The WebAssembly module.
    pub fn wasm(&self) -> &[u8] {
        &self.wasm
    }

    /// The package digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Environment variables.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
}
