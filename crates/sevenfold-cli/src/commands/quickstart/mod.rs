//! `sevenfold quickstart`: the platform on this machine, in one command.
//!
//! It runs the real pieces as far as they exist, in one process:
//!
//! 1. the Security Service (`sevenfold_service::server::start`, SQLite and
//!    blobs under `<data-dir>/server`), whose first start yields the admin
//!    token, kept in `<data-dir>/admin-token` (0600);
//! 2. through the operator API over HTTPS (the same [`Client`] every operator
//!    command uses), as that admin: a manufacturer CA (`<data-dir>/maker`)
//!    the server trusts, this very executable as a runtime release, the
//!    tenant `quickstart` with the product "Sample thermostat" (and its
//!    default device groups), the developer signing key
//!    (`<data-dir>/keys/developer.pem`) and the sample apps, signed and
//!    uploaded;
//! 3. four devices, each a real agent state directory
//!    (`<data-dir>/devices/device-N`, made with `sevenfold-agent`), endorsed
//!    by the maker, claimed into the tenant's Field Test group, with the
//!    sample apps installed. Each boots (measured boot) and attests against
//!    the device API; the three healthy ones get a 24-hour certificate and
//!    prove it over mutual TLS (`whoami`). The fourth has one payload byte
//!    of its installed app flipped on disk: boot refuses the image and the
//!    verifier fails the attestation, with the reason recorded on the
//!    service.
//!
//! Then it prints what happened (or one JSON `ready` line) and serves until
//! SIGINT or SIGTERM (or stops at once with `--exit-when-ready`).
//!
//! Everything is idempotent: a second run reuses the keys, the tenant, the
//! devices (same IDs) and the token, and the devices attest again. Looked-up
//! objects are reused; an "already exists" answer is never an error.
//!
//! The quickstart ignores `SEVENFOLD_*` server settings and config files:
//! its server is its own, in its own directory.
//!
//! Updates, compartments and the dashboard are later issues; the output says
//! so. The tampered device's refusal is in the failure view
//! (`sevenfold problem list`).

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Url};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use sevenfold_agent::{Agent, AttestError, RuntimeImage, ShutdownSignals, StateDir, TargetOutcome};
use sevenfold_core::api::{
    AddSigningKey, AttestationInfo, CreateProduct, CreateTenant, GroupInfo, ImageInfo, ProductInfo,
    RuntimeReleaseInfo, SigningKeyInfo, TenantInfo, Whoami,
};
use sevenfold_core::package::{read_package, Limits, TrustedKeys, UnverifiedPackage, HEADER_LEN};
use sevenfold_core::update::DeploymentInfo;
use sevenfold_pki::ManufacturerCa;
use sevenfold_rot::KeyAlgorithm;
use sevenfold_service::config::{ConfigLayer, ServerConfig};
use sevenfold_service::server::RunningServer;
use sevenfold_service::ServerError;

use crate::cli::{OutputMode, QuickstartArgs};
use crate::client::settings::{CaSource, Settings};
use crate::client::Client;
mod rollout;

use crate::commands::enrolment::{
    absolute, blocking, claim_into_group, create_or_find, ensure_runtime_release, get_optional,
    load_or_make_maker, open_or_make_device, trust_manufacturer, Found,
};
use crate::commands::{image, keygen, package};
use crate::{files, SAMPLE_APPS};

/// The tenant the quickstart creates.
const TENANT: &str = "quickstart";
/// Its product.
const PRODUCT: &str = "Sample thermostat";
/// The product's default group the devices join.
const GROUP: &str = "Field Test";
/// Devices that should pass attestation.
const HEALTHY_DEVICES: usize = 3;
/// Ports tried first (those of `sevenfold server`); any free port otherwise.
const OPERATOR_PORT: u16 = 8443;
const DEVICE_PORT: u16 = 8444;
/// The manufacturer CA standing in for the silicon vendor.
const MAKER_NAME: &str = "Sevenfold quickstart manufacturer CA";
const MAKER_DAYS: u32 = 3650;
/// Label of the developer key on the service.
const SIGNING_KEY_NAME: &str = "quickstart developer";
pub(crate) async fn run(mode: OutputMode, args: &QuickstartArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !SAMPLE_APPS.is_empty(),
        "this sevenfold binary was built without its sample apps; \
         run `rustup target add wasm32-wasip1` and rebuild"
    );
    super::init_quiet_logging();
    // Listen for signals before anything else: a supervisor may send SIGTERM
    // as soon as it reads the ready line, and Ctrl-C during setup must still
    // stop the server cleanly.
    let stop = ShutdownSignals::new().wait();
    tokio::pin!(stop);

    let dir = &args.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let progress = Progress::new(mode);
    progress.step("starting the Security Service");
    let server = start_server(dir).await?;

    let setup = setup(dir, &server, &progress);
    let outcome = tokio::select! {
        outcome = setup => Some(outcome),
        signal = &mut stop => {
            progress.finish();
            eprintln!("{signal}: stopping before the quickstart was ready");
            None
        }
    };
    progress.finish();
    let summary = match outcome {
        Some(Ok(summary)) => summary,
        Some(Err(error)) => {
            stop_server(server).await;
            return Err(error);
        }
        None => {
            stop_server(server).await;
            anyhow::bail!(
                "interrupted before the quickstart was ready; {} is kept and the next run continues from it",
                dir.display()
            );
        }
    };

    if let Err(error) = announce(mode, &summary, args.exit_when_ready) {
        stop_server(server).await;
        return Err(error);
    }
    if !args.exit_when_ready {
        let signal = stop.await;
        if mode == OutputMode::Text {
            eprintln!("{signal}: stopping the Security Service");
        }
    }
    stop_server(server).await;
    Ok(ExitCode::SUCCESS)
}

/// Prints the summary and the ready line (text), or the `ready` JSON line.
fn announce(mode: OutputMode, summary: &Summary, exit_when_ready: bool) -> anyhow::Result<()> {
    let text = match mode {
        OutputMode::Text => {
            let tail = if exit_when_ready {
                "stopping now: --exit-when-ready"
            } else {
                "Ctrl-C to stop"
            };
            format!(
                "{}quickstart ready: operator API {} ({tail})\n",
                summary.human(),
                summary.ready.operator_api
            )
        }
        OutputMode::Json => format!("{}\n", serde_json::to_string(&summary.ready)?),
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

// ------------------------------------------------------------------ server

/// Starts the Security Service in `<dir>/server` and gets the admin token:
/// the bootstrap token on the first start (saved), the saved one after.
async fn start_server(dir: &Path) -> anyhow::Result<Server> {
    let server_dir = dir.join("server");
    let devices = dir.join("devices");
    // Devices remember the device API's address; keep it if it is free.
    let device_port = StateDir::open(&devices.join(device_name(1)))
        .ok()
        .and_then(|state| state.config().service_url.port())
        .unwrap_or(DEVICE_PORT);
    let listen = free_or_any(OPERATOR_PORT);
    let device_listen = free_or_any(device_port);
    let running =
        match sevenfold_service::server::start(server_config(&server_dir, listen, device_listen)?)
            .await
        {
            // Taken between the check and the bind: any free ports will do.
            Err(error @ ServerError::Bind { .. })
                if listen.port() != 0 || device_listen.port() != 0 =>
            {
                tracing::warn!(%error, "the preferred ports were taken; using any free ports");
                let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                sevenfold_service::server::start(server_config(&server_dir, any, any)?).await
            }
            other => other,
        }
        .with_context(|| {
            format!(
                "the Security Service could not start in {}",
                server_dir.display()
            )
        })?;

    let token_file = dir.join("admin-token");
    let token = match &running.bootstrap_token {
        Some(token) => files::write_new(&token_file, format!("{token}\n").as_bytes(), 0o600, true)
            .map(|()| token.clone()),
        None => files::read_text(&token_file)
            .map(|text| text.trim().to_owned())
            .with_context(|| {
                format!(
                    "the Security Service in {} was set up earlier, but its admin token is not in {}; \
                     delete {} to start the quickstart afresh",
                    server_dir.display(),
                    token_file.display(),
                    dir.display()
                )
            }),
    };
    let token = match token {
        Ok(token) => token,
        Err(error) => {
            running.shutdown();
            running.wait().await;
            return Err(error);
        }
    };
    let ca_file = absolute(&server_dir.join("tls").join("ca.pem"));
    Ok(Server {
        operator_api: format!("https://{}", running.operator_addr),
        device_api: format!("https://{}", running.device_addr),
        ca_file,
        token,
        token_file,
        running,
    })
}

/// The running service and how to reach it.
struct Server {
    running: RunningServer,
    operator_api: String,
    device_api: String,
    /// The service CA (absolute path).
    ca_file: PathBuf,
    token: String,
    token_file: PathBuf,
}

/// Graceful shutdown: in-flight requests finish, the database closes.
async fn stop_server(server: Server) {
    server.running.shutdown();
    server.running.wait().await;
}

/// The quickstart's server settings: only the data directory and the
/// addresses; everything else is the default.
fn server_config(
    data_dir: &Path,
    listen: SocketAddr,
    device_listen: SocketAddr,
) -> anyhow::Result<ServerConfig> {
    let flags = ConfigLayer {
        data_dir: Some(data_dir.to_path_buf()),
        listen: Some(listen),
        device_listen: Some(device_listen),
        ..ConfigLayer::default()
    };
    Ok(ServerConfig::resolve(flags, ConfigLayer::default(), None)?)
}

/// `127.0.0.1:port` if a listener can be opened there now, else
/// `127.0.0.1:0` (any free port).
fn free_or_any(port: u16) -> SocketAddr {
    let wanted = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // SO_REUSEADDR as the server's own listener has, so that connections of
    // an earlier run still in TIME_WAIT do not count as "in use".
    let free = port != 0
        && tokio::net::TcpSocket::new_v4().is_ok_and(|socket| {
            socket.set_reuseaddr(true).is_ok()
                && socket.bind(wanted).is_ok()
                && socket.listen(1).is_ok()
        });
    if free {
        wanted
    } else {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }
}

// ------------------------------------------------------------------- setup

/// Everything between "the server listens" and "ready".
async fn setup(dir: &Path, server: &Server, progress: &Progress) -> anyhow::Result<Summary> {
    let client = Client::new(Settings {
        server: server.operator_api.clone(),
        token: server.token.clone(),
        ca: CaSource::File(server.ca_file.clone()),
        tenant: None,
    })?;
    let me: Whoami = client.get(&["whoami"], &[]).await.with_context(|| {
        format!(
            "the Security Service does not accept the admin token in {}; delete {} to start the quickstart afresh",
            server.token_file.display(),
            dir.display()
        )
    })?;
    anyhow::ensure!(
        me.server_admin,
        "the token in {} is not a server administrator's; delete {} to start the quickstart afresh",
        server.token_file.display(),
        dir.display()
    );

    progress.step("signing and packaging the sample apps");
    let local = {
        let dir = dir.to_path_buf();
        blocking(move || LocalMaterial::prepare(&dir)).await??
    };

    progress.step("trusting the manufacturer CA and this runtime build");
    let maker = trust_maker(&client, &local).await?;
    let runtime = RuntimeImage::current()?;
    let runtime_digest = {
        let runtime = runtime.clone();
        blocking(move || runtime.digest()).await??.to_hex()
    };
    let release = ensure_runtime_release(&client, &runtime_digest).await?;

    progress.step("creating the tenant, its product and its device groups");
    let tenant = find_or_create_tenant(&client).await?;
    let product = find_or_create_product(&client, &tenant.value.id).await?;
    let group = product
        .value
        .device_groups
        .iter()
        .find(|g| g.name == GROUP)
        .cloned()
        .with_context(|| format!("the product {PRODUCT:?} has no {GROUP:?} group"))?;

    progress.step("registering the signing key and uploading the sample apps");
    let signing_key = add_signing_key(&client, &tenant.value.id, &local).await?;
    let mut images = Vec::new();
    for package in &local.packages {
        images.push(upload_image(&client, &tenant.value.id, package).await?);
    }
    let update_image = upload_image(&client, &tenant.value.id, &local.update).await?;

    let env = DeviceEnv {
        device_url: server.device_api.clone(),
        ca_file: server.ca_file.clone(),
        maker_dir: local.maker_dir.clone(),
        developer_public_pem: local.developer_public_pem.clone(),
        developer_public_path: local.developer_public_path.clone(),
        packages: local.packages.iter().map(|p| p.file.clone()).collect(),
        runtime,
    };
    let mut devices = Vec::new();
    for n in 1..=HEALTHY_DEVICES + 1 {
        let tampered = n > HEALTHY_DEVICES;
        let name = device_name(n);
        progress.step(format!(
            "{name}: {}measured boot, attestation, certificate",
            if tampered {
                "tampering with its app, "
            } else {
                ""
            }
        ));
        let device = run_device(
            &client,
            &tenant.value.id,
            &group,
            &env,
            &dir.join("devices").join(&name),
            name,
            tampered,
        )
        .await?;
        devices.push(device);
    }
    let failed = devices
        .pop()
        .context("the tampered device is missing; this is a bug")?;
    let failed_device = match failed.outcome {
        DeviceOutcome::Refused { reasons } => FailedDevice {
            name: failed.name,
            device_id: failed.device_id,
            verdict: "fail",
            reasons,
            tampered_app: local
                .packages
                .first()
                .map(|p| format!("{} package", p.name))
                .unwrap_or_default(),
            state_dir: failed.state_dir,
        },
        DeviceOutcome::Passed { .. } => {
            anyhow::bail!("the tampered device passed attestation; this is a bug")
        }
    };
    let mut healthy = Vec::new();
    for device in devices {
        match device.outcome {
            DeviceOutcome::Passed {
                certificate_not_after,
                whoami_tenant,
            } => {
                anyhow::ensure!(
                    whoami_tenant == tenant.value.id,
                    "{} proved its certificate, but the service placed it in tenant {whoami_tenant}",
                    device.name
                );
                healthy.push(DeviceLine {
                    name: device.name,
                    device_id: device.device_id,
                    verdict: "pass",
                    certificate_not_after,
                    state_dir: device.state_dir,
                    claimed_now: device.claimed_now,
                });
            }
            DeviceOutcome::Refused { .. } => {
                anyhow::bail!("{} unexpectedly failed attestation", device.name)
            }
        }
    }

    // Act two: the apps arrive by deployment, an update follows, one app fails.
    let first_images: Vec<String> = images.iter().map(|i| i.value.id.clone()).collect();
    let update_images = vec![update_image.value.id.clone()];
    let tenant_id = tenant.value.id.clone();
    let already_updated =
        rollout::find_deployment(&client, &tenant_id, &group.id, &update_images).await?;
    let mut acts = Vec::new();
    let plan: Vec<(&str, &[String])> = if already_updated.is_some() {
        vec![("the update", &update_images[..])]
    } else {
        vec![
            ("the sample apps", &first_images[..]),
            ("the update", &update_images[..]),
        ]
    };
    for (what, ids) in plan {
        progress.step(format!("deploying {what} to {PRODUCT}/{GROUP}"));
        let deployment = rollout::deploy(&client, &tenant_id, &group, ids).await?;
        let mut outcomes = Vec::new();
        for device in &healthy {
            progress.step(format!(
                "{}: TUF update round: download, A/B install, {} s run check, commit",
                device.name,
                rollout::RUN_CHECK.as_secs()
            ));
            let round = rollout::update_device(&device.state_dir, &env.runtime)
                .await
                .with_context(|| format!("{} could not apply {what}", device.name))?;
            outcomes.push((device.name.clone(), round));
        }
        acts.push(DeploymentLine {
            what,
            deployment,
            outcomes,
        });
    }
    let crashing = healthy
        .last()
        .context("the quickstart has no healthy device; this is a bug")?;
    progress.step(format!(
        "{}: its app crashes (an injected fault); uploading the failure report",
        crashing.name
    ));
    rollout::fail_app(&crashing.state_dir, &env.runtime).await?;
    let problem = rollout::find_problem(&client, &tenant_id).await?;
    let dashboard = format!("{}/ui/", server.operator_api.trim_end_matches('/'));
    let login_link = format!(
        "{}/ui/login#token={}",
        server.operator_api.trim_end_matches('/'),
        server.token
    );

    let summary_deployments = acts.iter().map(|a| a.deployment.value.id.clone()).collect();
    images.push(update_image);
    Ok(Summary {
        deployments: acts,
        problem: ProblemLine {
            id: problem.id.clone(),
            title: problem.title.clone(),
            device: crashing.name.clone(),
        },
        data_dir: dir.to_path_buf(),
        tenant_name: tenant.value.name.clone(),
        tenant_new: tenant.new,
        product_new: product.new,
        maker,
        release,
        signing_key,
        images,
        token_file: server.token_file.clone(),
        ready: Ready {
            event: "ready",
            operator_api: server.operator_api.clone(),
            device_api: server.device_api.clone(),
            ca_file: server.ca_file.clone(),
            token: server.token.clone(),
            tenant_id: tenant.value.id,
            devices: healthy,
            failed_device,
            deployment_ids: summary_deployments,
            problem_id: problem.id,
            dashboard,
            login_link,
        },
    })
}

/// `device-N`.
fn device_name(n: usize) -> String {
    format!("device-{n}")
}

// ---------------------------------------------------------- local material

/// Files the quickstart makes once and reuses: the developer key, the
/// signed sample apps, the manufacturer CA.
struct LocalMaterial {
    developer_key_id: String,
    developer_public_pem: String,
    developer_public_path: PathBuf,
    packages: Vec<PackagedApp>,
    /// The update of the first sample app.
    update: PackagedApp,
    maker_dir: PathBuf,
    maker: ManufacturerCa,
    maker_new: bool,
}

/// A signed sample app on disk.
struct PackagedApp {
    name: String,
    version: String,
    file: PathBuf,
    bytes: Vec<u8>,
    package_digest: String,
}

/// Signs sample apps with the developer key.
struct Signer<'a> {
    key: &'a sevenfold_rot::SoftwareKey,
    public: &'a sevenfold_rot::PublicKey,
    trusted: &'a TrustedKeys,
}

impl Signer<'_> {
    /// The app `name` signed into `DIR/packages/NAME-VERSION.imagepackage`
    /// with `manifest_json` (kept as `DIR/apps/NAME/MANIFEST_FILE`). Signed
    /// once: a package is rebuilt only if it is missing, does not verify
    /// with this key, or holds another manifest or payload (signatures are
    /// randomised, so rebuilding every run would make a new image every run).
    fn package(
        &self,
        dir: &Path,
        name: &str,
        manifest_json: &[u8],
        wasm: &[u8],
        manifest_file: &str,
    ) -> anyhow::Result<PackagedApp> {
        let app_dir = dir.join("apps").join(name);
        let manifest_path = app_dir.join(manifest_file);
        files::write_new(&manifest_path, manifest_json, 0o644, true)?;
        files::write_new(&app_dir.join(format!("{name}.wasm")), wasm, 0o644, true)?;
        let manifest = package::load_manifest(&manifest_path)?;
        let out = dir
            .join("packages")
            .join(format!("{name}-{}.imagepackage", manifest.version()));
        let current = out.exists()
            && std::fs::read(&out).is_ok_and(|bytes| {
                UnverifiedPackage::parse(&bytes, &Limits::default())
                    .and_then(|p| p.verify(self.trusted))
                    .is_ok_and(|p| {
                        p.payload() == wasm && p.manifest().to_json() == manifest.to_json()
                    })
            });
        if !current {
            package::build(&manifest, wasm, self.key, &out, true)?;
        }
        let verified = image::inspect_file(&out, std::slice::from_ref(self.public))?;
        anyhow::ensure!(
            matches!(verified.signature, image::SignatureCheck::Verified { .. }),
            "the package {} did not verify",
            out.display()
        );
        Ok(PackagedApp {
            name: name.to_owned(),
            version: manifest.version().to_string(),
            bytes: files::read(&out)?,
            file: absolute(&out),
            package_digest: verified.package_digest,
        })
    }
}

impl LocalMaterial {
    fn prepare(dir: &Path) -> anyhow::Result<LocalMaterial> {
        // The developer's signing key.
        let key_path = dir.join("keys").join("developer.pem");
        if !key_path.exists() {
            keygen::generate(&key_path, KeyAlgorithm::EcdsaP256, false)?;
        }
        let key = keygen::load_private(&key_path)?;
        let public = key.public_key().clone();
        let public_path = keygen::public_key_path(&key_path);
        if !public_path.exists() {
            files::write_new(&public_path, public.to_pem().as_bytes(), 0o644, false)?;
        }
        let trusted: TrustedKeys = std::iter::once(public.clone()).collect();

        // The sample apps, and an update of the first: its next minor
        // version at the next security version (same module).
        let signer = Signer {
            key: &key,
            public: &public,
            trusted: &trusted,
        };
        let mut packages = Vec::new();
        for (name, manifest_json, wasm) in SAMPLE_APPS {
            packages.push(signer.package(dir, name, manifest_json, wasm, "app_manifest.json")?);
        }
        let (name, manifest_json, wasm) = SAMPLE_APPS
            .first()
            .context("this build has no sample app")?;
        let update = signer.package(
            dir,
            name,
            &rollout::update_manifest(manifest_json)?,
            wasm,
            "app_manifest-update.json",
        )?;

        // The manufacturer CA, as `sevenfold manufacturer init` makes it.
        let maker_dir = dir.join("maker");
        let (maker, maker_new) = load_or_make_maker(&maker_dir, MAKER_NAME, MAKER_DAYS)?;
        Ok(LocalMaterial {
            developer_key_id: public.key_id().to_hex(),
            developer_public_pem: public.to_pem(),
            developer_public_path: public_path,
            packages,
            update,
            maker_dir: absolute(&maker_dir),
            maker,
            maker_new,
        })
    }
}

// ------------------------------------------------------- operator API steps

/// The maker's CA, trusted by the server.
async fn trust_maker(client: &Client, local: &LocalMaterial) -> anyhow::Result<MakerLine> {
    let trusted = trust_manufacturer(client, &local.maker).await?;
    Ok(MakerLine {
        dir: local.maker_dir.clone(),
        fingerprint: trusted.value.fingerprint,
        made_now: local.maker_new,
        trusted_now: trusted.new,
    })
}

async fn find_tenant(client: &Client) -> anyhow::Result<Option<TenantInfo>> {
    let tenants: Vec<TenantInfo> = client.get(&["tenants"], &[]).await?;
    Ok(tenants.into_iter().find(|t| t.name == TENANT))
}

async fn find_or_create_tenant(client: &Client) -> anyhow::Result<Found<TenantInfo>> {
    if let Some(tenant) = find_tenant(client).await? {
        return Ok(Found::existing(tenant));
    }
    let body = CreateTenant {
        name: TENANT.to_owned(),
    };
    create_or_find(
        client.call(Method::POST, &["tenants"], Some(&body)),
        find_tenant(client),
        "the tenant",
    )
    .await
}

async fn find_product(client: &Client, tenant: &str) -> anyhow::Result<Option<ProductInfo>> {
    let products: Vec<ProductInfo> = client.get(&["tenants", tenant, "products"], &[]).await?;
    Ok(products.into_iter().find(|p| p.name == PRODUCT))
}

async fn find_or_create_product(
    client: &Client,
    tenant: &str,
) -> anyhow::Result<Found<ProductInfo>> {
    if let Some(product) = find_product(client, tenant).await? {
        return Ok(Found::existing(product));
    }
    let body = CreateProduct {
        name: PRODUCT.to_owned(),
        description: "The quickstart's sample product".to_owned(),
    };
    create_or_find(
        client.call(Method::POST, &["tenants", tenant, "products"], Some(&body)),
        find_product(client, tenant),
        "the product",
    )
    .await
}

async fn add_signing_key(
    client: &Client,
    tenant: &str,
    local: &LocalMaterial,
) -> anyhow::Result<Found<SigningKeyInfo>> {
    let key_id = &local.developer_key_id;
    let find = || async {
        let keys: Vec<SigningKeyInfo> = client
            .get(&["tenants", tenant, "signing-keys"], &[])
            .await?;
        Ok(keys.into_iter().find(|k| &k.key_id == key_id))
    };
    let key = match find().await? {
        Some(key) => Found::existing(key),
        None => {
            let body = AddSigningKey {
                name: SIGNING_KEY_NAME.to_owned(),
                public_key_pem: local.developer_public_pem.clone(),
            };
            create_or_find(
                client.call(
                    Method::POST,
                    &["tenants", tenant, "signing-keys"],
                    Some(&body),
                ),
                find(),
                "the signing key",
            )
            .await?
        }
    };
    anyhow::ensure!(
        key.value.revoked_at.is_none(),
        "the developer signing key {key_id} is revoked in the tenant; delete the data directory to start afresh"
    );
    Ok(key)
}

/// Uploads a package unless the tenant has it (image ID = package digest).
async fn upload_image(
    client: &Client,
    tenant: &str,
    package: &PackagedApp,
) -> anyhow::Result<Found<ImageInfo>> {
    let id = package.package_digest.as_str();
    let find = || async move {
        get_optional::<ImageInfo>(client, &["tenants", tenant, "images", id]).await
    };
    if let Some(image) = find().await? {
        return Ok(Found::existing(image));
    }
    let request = client
        .request(Method::POST, client.url(&["tenants", tenant, "images"])?)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(package.bytes.clone());
    create_or_find(
        client.json::<ImageInfo>(request),
        find(),
        &format!("the image {} {}", package.name, package.version),
    )
    .await
}

// ----------------------------------------------------------------- devices

/// What every device needs.
#[derive(Clone)]
struct DeviceEnv {
    device_url: String,
    ca_file: PathBuf,
    maker_dir: PathBuf,
    developer_public_pem: String,
    developer_public_path: PathBuf,
    packages: Vec<PathBuf>,
    runtime: RuntimeImage,
}

/// One device's run.
struct DeviceRun {
    name: String,
    device_id: String,
    state_dir: PathBuf,
    claimed_now: bool,
    outcome: DeviceOutcome,
}

enum DeviceOutcome {
    Passed {
        certificate_not_after: String,
        whoami_tenant: String,
    },
    Refused {
        /// The verifier's reasons, as the service recorded them.
        reasons: Vec<String>,
    },
}

/// Makes (or reopens) a device, claims it, boots it and attests.
async fn run_device(
    client: &Client,
    tenant: &str,
    group: &GroupInfo,
    env: &DeviceEnv,
    state_dir: &Path,
    name: String,
    tampered: bool,
) -> anyhow::Result<DeviceRun> {
    let state = {
        let dir = state_dir.to_path_buf();
        let env = env.clone();
        blocking(move || prepare_device(&dir, &env, tampered))
            .await?
            .with_context(|| format!("cannot set up {name} in {}", state_dir.display()))?
    };
    let device_id = state.device_id().to_string();

    // Claim it (once) and put it in the Field Test group.
    let claimed_now = claim_into_group(client, tenant, &group.id, &state)
        .await
        .with_context(|| format!("cannot enrol {name}"))?;

    // Boot (measure what is installed), then attest.
    let agent = {
        let runtime = env.runtime.clone();
        blocking(move || Agent::start(state, &runtime))
            .await?
            .with_context(|| format!("measured boot of {name} failed"))?
    };
    let outcome = match agent.attest().await {
        Ok(_) => {
            let who = sevenfold_agent::whoami(agent.state())
                .await
                .with_context(|| {
                    format!("{name} attested, but the service did not accept its certificate")
                })?;
            DeviceOutcome::Passed {
                certificate_not_after: who.certificate_not_after,
                whoami_tenant: who.tenant_id,
            }
        }
        Err(AttestError::Refused { reasons, .. }) if tampered => {
            let recorded = latest_attestation(client, tenant, &device_id).await?;
            anyhow::ensure!(
                recorded.verdict == "fail",
                "the service recorded {:?} for the tampered device, not \"fail\"",
                recorded.verdict
            );
            anyhow::ensure!(
                !agent.boot_report().failures.is_empty(),
                "measured boot of the tampered device refused nothing; this is a bug"
            );
            DeviceOutcome::Refused {
                reasons: if recorded.reasons.is_empty() {
                    reasons
                } else {
                    recorded.reasons
                },
            }
        }
        Err(AttestError::Refused { reasons, .. }) => anyhow::bail!(
            "{name} ({device_id}) should have passed attestation, but the verifier refused it: {}",
            reasons.join("; ")
        ),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("{name} could not attest"))),
    };
    if tampered {
        anyhow::ensure!(
            matches!(outcome, DeviceOutcome::Refused { .. }),
            "{name} runs a tampered app but passed attestation; refusing to continue"
        );
    }
    Ok(DeviceRun {
        name,
        device_id,
        state_dir: absolute(state_dir),
        claimed_now,
        outcome,
    })
}

/// The newest verdict the service recorded for a device.
async fn latest_attestation(
    client: &Client,
    tenant: &str,
    device: &str,
) -> anyhow::Result<AttestationInfo> {
    let history: Vec<AttestationInfo> = client
        .get(
            &["tenants", tenant, "devices", device, "attestations"],
            &[("limit", "1".to_owned())],
        )
        .await?;
    history
        .into_iter()
        .next()
        .with_context(|| format!("the service recorded no attestation of device {device}"))
}

/// The device's state directory, ready to boot: made (or reopened), pointed
/// at this run's device API, trusting the developer key, with the sample
/// apps installed, and, for the tampered device, one payload byte of its
/// first app flipped on disk.
fn prepare_device(dir: &Path, env: &DeviceEnv, tampered: bool) -> anyhow::Result<StateDir> {
    let state = open_or_make_device(dir, &env.device_url, &env.ca_file, &env.maker_dir)?;
    let ca_pem = files::read_text(&env.ca_file)?;
    anyhow::ensure!(
        same_certificates(&state.service_ca_pem()?, &ca_pem),
        "{} pins another Security Service's CA (the server data was replaced); \
         delete {} to make new devices",
        dir.display(),
        dir.parent().unwrap_or(dir).display()
    );
    let url = Url::parse(&env.device_url)
        .with_context(|| format!("{} is not a URL; this is a bug", env.device_url))?;
    let state = if state.config().service_url == url {
        state
    } else {
        repoint(&state, &env.device_url)?;
        StateDir::open(dir)?
    };
    state.trust_key(&env.developer_public_pem, &env.developer_public_path)?;
    // Healthy devices get their apps by deployment; the tampered one has
    // them sideloaded, then damaged on disk.
    if tampered {
        let mut installed = Vec::new();
        for package in &env.packages {
            installed.push(state.install(package)?);
        }
        let first = installed
            .first()
            .context("no sample app was installed; this is a bug")?;
        let trusted: TrustedKeys = state.trusted_keys()?.0;
        tamper(&first.path, &trusted)?;
    }
    Ok(state)
}

/// Whether two PEM texts hold the same certificates.
fn same_certificates(a: &str, b: &str) -> bool {
    let ders = |pem: &str| -> Vec<Vec<u8>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .filter_map(Result::ok)
            .map(|c| c.as_ref().to_vec())
            .collect()
    };
    let a = ders(a);
    !a.is_empty() && a == ders(b)
}

/// Points a quickstart device at this run's device API (the port can change
/// between runs when the preferred one is taken): rewrites `service_url` in
/// its `agent.toml`, keeping every other setting, atomically.
///
/// The agent library has no call for this yet; it belongs there
/// (`StateDir::set_service_url`) when devices can be moved between services.
fn repoint(state: &StateDir, url: &str) -> anyhow::Result<()> {
    let path = state.path(sevenfold_agent::CONFIG_FILE);
    let mut config: toml::Table = toml::from_str(&files::read_text(&path)?)
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    config.insert(
        "service_url".to_owned(),
        toml::Value::String(url.to_owned()),
    );
    let text = format!(
        "# Sevenfold device agent configuration (written by `sevenfold agent init`;\n\
         # service_url re-pointed by `sevenfold quickstart`).\n{}",
        toml::to_string(&config).context("cannot write agent.toml")?
    );
    let tmp = state.path(".agent.toml.quickstart.tmp");
    files::write_new(&tmp, text.as_bytes(), 0o600, true)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Flips one byte in the middle of an installed package's payload, as an
/// attacker (or a failing disk) would, and checks the package no longer
/// verifies.
fn tamper(path: &Path, trusted: &TrustedKeys) -> anyhow::Result<()> {
    let mut bytes = read_package(
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        &Limits::default(),
    )
    .with_context(|| format!("{} is not an image package", path.display()))?;
    let payload_len = UnverifiedPackage::parse(&bytes, &Limits::default())
        .with_context(|| format!("{} is not an image package", path.display()))?
        .payload()
        .len();
    // Header field at offset 44: the manifest length (u32, big-endian); the
    // payload follows the header and the manifest.
    let manifest_len = bytes
        .get(44..48)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .context("the package header is too short")?;
    let at = HEADER_LEN + manifest_len as usize + payload_len / 2;
    let byte = bytes
        .get_mut(at)
        .context("the payload is not where the header says")?;
    *byte ^= 0x01;
    let outcome =
        UnverifiedPackage::parse(&bytes, &Limits::default()).and_then(|p| p.verify(trusted));
    anyhow::ensure!(
        outcome.is_err(),
        "a package with a flipped payload byte still verified; refusing to continue"
    );
    files::write_new(path, &bytes, 0o600, true)
}

// ------------------------------------------------------------------ output

/// The `ready` line (`--output json`): its field names are the contract.
#[derive(Serialize)]
struct Ready {
    event: &'static str,
    operator_api: String,
    device_api: String,
    ca_file: PathBuf,
    token: String,
    tenant_id: String,
    devices: Vec<DeviceLine>,
    failed_device: FailedDevice,
    /// The deployments' IDs: the sample apps, then the update.
    deployment_ids: Vec<String>,
    /// The problem the crashing app became.
    problem_id: String,
    /// The web dashboard, and a link that logs the admin in.
    dashboard: String,
    login_link: String,
}

#[derive(Serialize)]
struct DeviceLine {
    name: String,
    device_id: String,
    verdict: &'static str,
    certificate_not_after: String,
    state_dir: PathBuf,
    #[serde(skip)]
    claimed_now: bool,
}

#[derive(Serialize)]
struct FailedDevice {
    name: String,
    device_id: String,
    verdict: &'static str,
    reasons: Vec<String>,
    state_dir: PathBuf,
    /// Which app was tampered with.
    #[serde(skip)]
    tampered_app: String,
}

/// The manufacturer CA line.
struct MakerLine {
    dir: PathBuf,
    fingerprint: String,
    made_now: bool,
    trusted_now: bool,
}

/// A deployment the quickstart made (or found) and what each device did.
struct DeploymentLine {
    what: &'static str,
    deployment: Found<DeploymentInfo>,
    /// Per healthy device: its update round's outcomes.
    outcomes: Vec<(String, Vec<TargetOutcome>)>,
}

/// The problem the crashing app became.
struct ProblemLine {
    id: String,
    title: String,
    device: String,
}

/// What happened, for people.
struct Summary {
    deployments: Vec<DeploymentLine>,
    problem: ProblemLine,
    data_dir: PathBuf,
    tenant_name: String,
    tenant_new: bool,
    product_new: bool,
    maker: MakerLine,
    release: Found<RuntimeReleaseInfo>,
    signing_key: Found<SigningKeyInfo>,
    images: Vec<Found<ImageInfo>>,
    token_file: PathBuf,
    ready: Ready,
}

fn new_or_reused(new: bool) -> &'static str {
    if new {
        "new"
    } else {
        "reused"
    }
}

/// The first 16 hex characters of an ID.
fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

impl Summary {
    fn human(&self) -> String {
        let r = &self.ready;
        let mut s = format!(
            "Sevenfold quickstart in {} (reused on every run)\n\n",
            self.data_dir.display()
        );
        let line = |s: &mut String, label: &str, text: String| {
            s.push_str(&format!("{label:<19}{text}\n"));
        };
        line(
            &mut s,
            "Security Service",
            format!(
                "operator API {}, device API {}",
                r.operator_api, r.device_api
            ),
        );
        line(
            &mut s,
            "",
            format!(
                "SQLite and blobs in {}, service CA {}",
                self.data_dir.join("server").display(),
                r.ca_file.display()
            ),
        );
        line(
            &mut s,
            "Tenant",
            format!(
                "{} ({}, {}), product \"{PRODUCT}\" ({}) with its default device groups",
                self.tenant_name,
                r.tenant_id,
                new_or_reused(self.tenant_new),
                new_or_reused(self.product_new),
            ),
        );
        line(
            &mut s,
            "Trusted",
            format!(
                "manufacturer CA {} ({}…{})",
                self.maker.dir.display(),
                short(&self.maker.fingerprint),
                if self.maker.made_now || self.maker.trusted_now {
                    ", new"
                } else {
                    ", reused"
                }
            ),
        );
        line(
            &mut s,
            "",
            format!(
                "runtime release {} = this sevenfold build (sha256 {}…, {})",
                self.release.value.version,
                short(&self.release.value.digest),
                new_or_reused(self.release.new)
            ),
        );
        line(
            &mut s,
            "",
            format!(
                "signing key \"{}\" ({}…, {})",
                self.signing_key.value.name,
                short(&self.signing_key.value.key_id),
                new_or_reused(self.signing_key.new)
            ),
        );
        for image in &self.images {
            line(
                &mut s,
                "Image",
                format!(
                    "{} {} signed and uploaded (image {}…, {})",
                    image.value.name,
                    image.value.version,
                    short(&image.value.id),
                    new_or_reused(image.new)
                ),
            );
        }
        line(
            &mut s,
            "Devices",
            format!(
                "in \"{PRODUCT}/{GROUP}\": measured boot, attestation, 24 h certificate, mutual TLS"
            ),
        );
        for d in &r.devices {
            s.push_str(&format!(
                "  {:<10} {}…  {}  certificate valid until {}{}\n",
                d.name,
                short(&d.device_id),
                d.verdict,
                d.certificate_not_after,
                if d.claimed_now { " (claimed now)" } else { "" }
            ));
        }
        for act in &self.deployments {
            let d = &act.deployment.value;
            line(
                &mut s,
                "Deployment",
                format!(
                    "{} {}… ({}): {}",
                    act.what,
                    short(&d.id),
                    new_or_reused(act.deployment.new),
                    d.status
                ),
            );
            for (device, outcomes) in &act.outcomes {
                let done: Vec<String> = outcomes
                    .iter()
                    .map(|o| {
                        format!(
                            "{} {} {}{}",
                            o.name,
                            o.version,
                            o.state,
                            o.reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                s.push_str(&format!(
                    "  {device:<10} {}\n",
                    if done.is_empty() {
                        "already up to date".to_owned()
                    } else {
                        done.join(", ")
                    }
                ));
            }
        }
        line(
            &mut s,
            "Problem",
            format!(
                "{}… \"{}\": {}'s app crashed (an injected fault) and reported it",
                short(&self.problem.id),
                self.problem.title,
                self.problem.device
            ),
        );
        let f = &r.failed_device;
        s.push_str(&format!(
            "  {:<10} {}…  {}  one payload byte of its installed {} was flipped on disk;\n",
            f.name,
            short(&f.device_id),
            f.verdict,
            f.tampered_app
        ));
        s.push_str(&format!(
            "{:13}measured boot refused it, and the service recorded why attestation failed:\n",
            ""
        ));
        for reason in &f.reasons {
            s.push_str(&format!("{:13}{reason}\n", ""));
        }
        s.push_str(&format!(
            "{:13}(`sevenfold device attestation {}` shows it)\n\n",
            "", f.device_id
        ));
        line(
            &mut s,
            "Admin token",
            format!("{} (saved in {})", r.token, self.token_file.display()),
        );
        line(
            &mut s,
            "Drive it",
            format!(
                "sevenfold login --server {} --token {} --ca {} --tenant {}",
                r.operator_api,
                r.token,
                r.ca_file.display(),
                self.tenant_name
            ),
        );
        line(&mut s, "", "sevenfold device list".to_owned());
        line(&mut s, "Dashboard", r.dashboard.clone());
        line(&mut s, "", format!("log in: {}", r.login_link));
        s.push('\n');
        s
    }
}

/// A spinner on standard error for the long steps; hidden when standard
/// error is not a terminal or the output is JSON.
struct Progress(ProgressBar);

impl Progress {
    fn new(mode: OutputMode) -> Progress {
        if mode == OutputMode::Json || !std::io::stderr().is_terminal() {
            return Progress(ProgressBar::hidden());
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress(bar)
    }

    fn step(&self, message: impl Into<Cow<'static, str>>) {
        self.0.set_message(message);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

// ----------------------------------------------------------------- helpers
