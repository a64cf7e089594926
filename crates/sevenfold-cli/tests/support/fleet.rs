//! A fleet for update tests: a real server, a tenant with a product and
//! its "Field Test" group, a release key and an untrusted one, blink
//! packaged at any version, and devices enrolled into the group.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{cli_ok, ok_json, s, Api, TestServer};

/// blink's component ID.
pub const BLINK: &str = "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10";

/// See the module documentation.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub server: TestServer,
    pub admin: Api,
    pub token: String,
    pub tenant: String,
    pub group: String,
}

impl Fleet {
    /// Starts a server (with `env`) and sets up tenant, keys and group.
    pub fn start(env: &[(&str, &str)]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(&dir.path().join("data"), None, env);
        let token = server.bootstrap_token.clone().unwrap();
        let admin = server.client(&token);
        let mut fleet = Fleet {
            dir,
            server,
            admin,
            token,
            tenant: String::new(),
            group: String::new(),
        };
        ok_json(&[
            "manufacturer",
            "init",
            "--out-dir",
            s(&fleet.path("maker")),
            "--name",
            "Test Silicon",
        ]);
        let ca = std::fs::read_to_string(fleet.path("maker/ca.pem")).unwrap();
        let r = fleet
            .admin
            .post("/api/v1/manufacturer-cas", json!({"certificate_pem": ca}));
        assert_eq!(r.status, 201, "{r:?}");
        let runtime = sevenfold_rot::Digest::of(&std::fs::read(super::bin()).unwrap());
        let r = fleet.admin.post(
            "/api/v1/runtime-releases",
            json!({"digest": runtime.to_hex(), "version": "test"}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        ok_json(&["keygen", "--out", s(&fleet.path("release.pem"))]);
        ok_json(&["keygen", "--out", s(&fleet.path("other.pem"))]);
        fleet.tenant = fleet.op(&["tenant", "create", "acme"])["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for key in ["release", "other"] {
            fleet.op(&[
                "signing-key",
                "add",
                s(&fleet.path(&format!("{key}.pub.pem"))),
                "--name",
                key,
                "--tenant",
                "acme",
            ]);
        }
        let product = fleet.op(&["product", "create", "lamp", "--tenant", "acme"]);
        fleet.group = product["device_groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "Field Test")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        fleet
    }

    /// A path in the fleet's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs an operator command, which must succeed.
    pub fn op(&self, args: &[&str]) -> Value {
        cli_ok(&self.server, &self.token, &self.path("config"), args)
    }

    /// Packages blink at `version` / `security_version`, signed with `key`,
    /// uploads it, and returns (image ID, package file).
    pub fn image(&self, version: &str, security_version: u32, key: &str) -> (String, PathBuf) {
        self.image_of(version, security_version, key, "blink.wasm")
    }

    /// Like [`Fleet::image`], with another sample app's module as payload.
    pub fn image_of(
        &self,
        version: &str,
        security_version: u32,
        key: &str,
        wasm: &str,
    ) -> (String, PathBuf) {
        let payload = Path::new(env!("SEVENFOLD_SAMPLE_WASM_DIR")).join(wasm);
        self.image_from(version, security_version, key, &payload)
    }

    /// Like [`Fleet::image`], with the module at `payload`.
    pub fn image_from(
        &self,
        version: &str,
        security_version: u32,
        key: &str,
        payload: &Path,
    ) -> (String, PathBuf) {
        let out = self.package(version, security_version, key, payload);
        let id = self.op(&["image", "add", s(&out), "--tenant", "acme"])["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (id, out)
    }

    /// Packages blink's manifest at `version` with the module at `payload`,
    /// signed with `key`, without uploading it; returns the package file.
    pub fn package(
        &self,
        version: &str,
        security_version: u32,
        key: &str,
        payload: &Path,
    ) -> PathBuf {
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps/blink/app_manifest.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let mut manifest = manifest;
        manifest["Version"] = json!(version);
        manifest["SecurityVersion"] = json!(security_version);
        let manifest_path = self.path(&format!("manifest-{version}.json"));
        std::fs::write(&manifest_path, manifest.to_string()).unwrap();
        let out = self.path(&format!("blink-{version}.imagepackage"));
        ok_json(&[
            "package",
            "--manifest",
            s(&manifest_path),
            "--payload",
            s(payload),
            "--key",
            s(&self.path(&format!("{key}.pem"))),
            "--out",
            s(&out),
        ]);
        out
    }

    /// A device in the group, trusting the release key, with `v1` installed.
    pub fn device(&self, name: &str, v1: &Path) -> (PathBuf, String) {
        self.device_on(name, v1, &[])
    }

    /// [`Fleet::device`] with a root-of-trust choice (`--rot tpm --tcti …`).
    pub fn device_on(&self, name: &str, v1: &Path, rot: &[&str]) -> (PathBuf, String) {
        let state = self.path(name);
        let id = super::enrol(
            &self.server,
            &state,
            &self.path("maker"),
            &self.path("release.pub.pem"),
            rot,
            |args| {
                let mut args = args.to_vec();
                args.extend(["--tenant", "acme"]);
                self.op(&args)
            },
        );
        self.op(&[
            "device",
            "assign",
            &id,
            "--group",
            &self.group,
            "--tenant",
            "acme",
        ]);
        ok_json(&["agent", "install", "--state-dir", s(&state), s(v1)]);
        (state, id)
    }

    /// `deployment create` of one image to the group, then waits until its
    /// deltas are made (and signed in); returns its ID.
    pub fn deploy(&self, image: &str, extra: &[&str]) -> String {
        let id = self.create_deployment(image, extra)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.wait_for_deltas(&id);
        id
    }

    /// `deployment create` of one image to the group; its JSON answer, as
    /// soon as the server gives it (deltas may still be being made).
    pub fn create_deployment(&self, image: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "deployment",
            "create",
            "--group",
            &self.group,
            "--image",
            image,
            "--tenant",
            "acme",
        ];
        args.extend_from_slice(extra);
        self.op(&args)
    }

    /// Waits until the service has made a deployment's deltas; returns
    /// `deployment show` then.
    pub fn wait_for_deltas(&self, deployment: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let shown = self.show(deployment);
            if shown["deltas_state"] == "ready" {
                return shown;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "deltas still being made: {shown}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `deployment show`.
    pub fn show(&self, deployment: &str) -> Value {
        self.op(&["deployment", "show", deployment, "--tenant", "acme"])
    }
}

/// `agent update --now`, which must succeed; its JSON report.
pub fn update(state: &Path) -> Value {
    ok_json(&["agent", "update", "--now", "--state-dir", s(state)])
}

/// SHA-256 of blink's active package file on a device.
pub fn active_sha256(state: &Path) -> String {
    let bytes = std::fs::read(state.join(format!("images/{BLINK}.imagepackage"))).unwrap();
    sevenfold_rot::Digest::of(&bytes).to_hex()
}

/// SHA-256 of a file.
pub fn file_sha256(path: &Path) -> String {
    sevenfold_rot::Digest::of(&std::fs::read(path).unwrap()).to_hex()
}

/// A device's row in `deployment show`.
pub fn device_row<'a>(shown: &'a Value, device: &str) -> &'a Value {
    shown["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == device)
        .unwrap_or_else(|| panic!("{device} not in {shown}"))
}
