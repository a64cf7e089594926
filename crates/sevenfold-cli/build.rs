//! Builds the sample applications in `apps/` for `wasm32-wasip1` and embeds
//! them in the `sevenfold` binary, so that `sevenfold quickstart` has real
//! WebAssembly apps to package and deploy wherever the binary goes.
//!
//! The apps are their own Cargo workspace (they target WebAssembly, not the
//! host), built into `<target>/apps` by a nested `cargo build`. If the
//! `wasm32-wasip1` target is missing and `rustup` is available, it is added
//! once. Set `SEVENFOLD_SKIP_APPS=1` to build without the apps (quickstart
//! then says how to get them).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";
/// The sample apps, by crate name; each has an `app_manifest.json` beside its `Cargo.toml`.
const APPS: &[&str] = &["blink"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let apps_dir = manifest_dir.join("../../apps");
    println!(
        "cargo:rerun-if-changed={}",
        apps_dir.join("Cargo.toml").display()
    );
    for app in APPS {
        println!("cargo:rerun-if-changed={}", apps_dir.join(app).display());
    }
    println!("cargo:rerun-if-env-changed=SEVENFOLD_SKIP_APPS");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let skip = env::var("SEVENFOLD_SKIP_APPS").is_ok_and(|v| v == "1");
    let built = if skip { None } else { build_apps(&apps_dir) };

    // `sample_apps.rs` defines SAMPLE_APPS: &[(name, manifest JSON, wasm bytes)].
    let mut code =
        String::from("/// Sample apps embedded at build time: (name, manifest, wasm).\n");
    code.push_str("pub(crate) const SAMPLE_APPS: &[(&str, &[u8], &[u8])] = &[\n");
    if let Some(wasm_dir) = built {
        // Tests package the same real wasm files with `sevenfold package`.
        println!(
            "cargo:rustc-env=SEVENFOLD_SAMPLE_WASM_DIR={}",
            canonical(&wasm_dir).display()
        );
        for app in APPS {
            let manifest = apps_dir.join(app).join("app_manifest.json");
            let wasm = wasm_dir.join(format!("{app}.wasm"));
            let _ = writeln!(
                code,
                "    ({app:?}, include_bytes!({:?}), include_bytes!({:?})),",
                canonical(&manifest),
                canonical(&wasm)
            );
        }
    }
    code.push_str("];\n");
    if let Err(e) = std::fs::write(out_dir.join("sample_apps.rs"), code) {
        panic!("cannot write sample_apps.rs: {e}");
    }
}

/// Builds the apps; returns the directory holding the `.wasm` files.
fn build_apps(apps_dir: &Path) -> Option<PathBuf> {
    let target_root = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => apps_dir.join("../target"),
    };
    let target_dir = target_root.join("apps");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = || {
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
            .arg(apps_dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir);
        // The outer build's flags and wrappers (clippy, coverage) are for the host.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        cmd.status().is_ok_and(|s| s.success())
    };
    if !build() {
        // Most often the target is not installed yet: add it and try once more.
        let added = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .is_ok_and(|s| s.success());
        if !added || !build() {
            println!(
                "cargo:warning=could not build the sample apps for {TARGET}; \
                 run `rustup target add {TARGET}` and rebuild. \
                 `sevenfold quickstart` needs them."
            );
            return None;
        }
    }
    Some(target_dir.join(TARGET).join("release"))
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
