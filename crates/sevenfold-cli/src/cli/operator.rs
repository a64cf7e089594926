//! Operator commands: everything that talks to a Security Service, plus the
//! local manufacturer tools.
//!
//! Connection flags ([`ConnectionArgs`], [`TenantArg`]) are declared once
//! and flattened into each command group; they are `global`, so they may be
//! given before or after the subcommand (`sevenfold device --tenant t list`
//! or `sevenfold device list --tenant t`).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};

/// Where the Security Service is and how to authenticate to it.
///
/// Each setting comes from the flag, else the environment variable, else the
/// configuration saved by `sevenfold login` (used only for the server it was
/// saved for).
#[derive(Clone, Debug, Default, Args)]
pub(crate) struct ConnectionArgs {
    /// Security Service address, e.g. `https://sevenfold.example:8443`
    /// [env: SEVENFOLD_SERVER]
    #[arg(long, global = true, value_name = "URL", help_heading = "Connection")]
    pub(crate) server: Option<String>,
    /// API token (`sf_…`) [env: SEVENFOLD_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN", help_heading = "Connection")]
    pub(crate) token: Option<String>,
    /// The service CA certificate to trust (PEM; the server's
    /// `DATA_DIR/tls/ca.pem`) [env: SEVENFOLD_CA]
    #[arg(
        long,
        global = true,
        value_name = "CA.pem",
        help_heading = "Connection"
    )]
    pub(crate) ca: Option<PathBuf>,
}

/// Which tenant a command acts in.
#[derive(Clone, Debug, Default, Args)]
pub(crate) struct TenantArg {
    /// Tenant to act in, by name or ID [env: SEVENFOLD_TENANT] [default: the
    /// tenant saved by `sevenfold login`]
    #[arg(
        long,
        global = true,
        value_name = "NAME_OR_ID",
        help_heading = "Connection"
    )]
    pub(crate) tenant: Option<String>,
}

// ---------------------------------------------------------------- login

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
}

// ---------------------------------------------------------------- tenant

#[derive(Debug, Args)]
pub(crate) struct TenantArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: TenantCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant; you become its administrator (server administrators only).
    Create {
        /// Unique tenant name.
        name: String,
    },
    /// List the tenants you have a role in (all of them for server administrators).
    List,
    /// Show a tenant.
    Show {
        /// Tenant name or ID [default: the tenant of --tenant or the login]
        #[arg(value_name = "NAME_OR_ID")]
        name: Option<String>,
    },
    /// The tenant's device CA: download it for third-party services, prove
    /// possession of its key to them, rotate it.
    #[command(subcommand)]
    Ca(TenantCaCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum TenantCaCommand {
    /// Write the tenant's device CA certificates (every unexpired generation,
    /// newest first) to a PEM file, for services that authenticate the
    /// tenant's devices (an MQTT broker, say).
    Download {
        /// PEM file to write.
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Prove to a third-party service that the tenant holds its CA: the CA
    /// signs a certificate whose subject is the service's verification code
    /// (administrators).
    Prove {
        /// The verification code the service asked to see signed.
        #[arg(long, value_name = "CODE")]
        code: String,
        /// PEM file to write the signed certificate to (upload it to the service).
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Make a new CA generation that issues device certificates from now on;
    /// earlier generations stay published until they expire (administrators).
    Rotate,
}

// ---------------------------------------------------------------- role

/// A role in a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RoleArg {
    /// Everything, including roles, signing keys and transfers.
    Administrator,
    /// Claim and manage devices, products, groups and images.
    Contributor,
    /// Read only.
    Reader,
}

impl RoleArg {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RoleArg::Administrator => "administrator",
            RoleArg::Contributor => "contributor",
            RoleArg::Reader => "reader",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct RoleArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: RoleCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RoleCommand {
    /// Grant a user a role in the tenant; a new user is created and its API
    /// token printed once.
    Add {
        /// User name.
        user: String,
        /// The role.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Take away a user's role in the tenant.
    Remove {
        /// User name.
        user: String,
    },
    /// List the users with a role in the tenant.
    List,
}

// ---------------------------------------------------------------- product

#[derive(Debug, Args)]
pub(crate) struct ProductArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: ProductCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProductCommand {
    /// Create a product, with its default device groups (Development, Field
    /// Test, Production).
    Create {
        /// Product name, unique in the tenant.
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the tenant's products.
    List,
    /// Show a product and its device groups.
    Show {
        /// Product name or ID.
        #[arg(value_name = "NAME_OR_ID")]
        product: String,
    },
    /// Delete a product and its device groups (refused while devices are in them).
    Delete {
        /// Product name or ID.
        #[arg(value_name = "NAME_OR_ID")]
        product: String,
    },
}

// ---------------------------------------------------------------- device group

/// Which updates a device group accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum UpdatePolicyArg {
    /// Application and runtime updates.
    AcceptAll,
    /// Runtime updates only.
    NoAppUpdates,
}

impl UpdatePolicyArg {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UpdatePolicyArg::AcceptAll => "accept-all",
            UpdatePolicyArg::NoAppUpdates => "no-app-updates",
        }
    }
}

/// A switch given as `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl Switch {
    /// Whether it is on.
    pub(crate) fn is_on(self) -> bool {
        self == Switch::On
    }
}

/// Which runtime releases a device group follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RuntimeFeedArg {
    /// Released runtimes.
    Stable,
    /// Pre-release runtimes, for evaluation before they reach the fleet.
    Evaluation,
}

impl RuntimeFeedArg {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RuntimeFeedArg::Stable => "stable",
            RuntimeFeedArg::Evaluation => "evaluation",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct DeviceGroupArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: DeviceGroupCommand,
}

/// Settings of a device group; on `update`, only those given change.
#[derive(Debug, Args)]
pub(crate) struct GroupSettings {
    /// Free text.
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// Which updates the group's devices accept [default on create: accept-all]
    #[arg(long, value_enum)]
    pub(crate) update_policy: Option<UpdatePolicyArg>,
    /// Which runtime releases the group follows [default on create: stable]
    #[arg(long, value_enum)]
    pub(crate) runtime_feed: Option<RuntimeFeedArg>,
    /// Share of the group's devices a rollout reaches, 0 to 100 [default on
    /// create: 100]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) rollout_percent: Option<u8>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceGroupCommand {
    /// Create a device group in a product.
    Create {
        /// The product, by name or ID.
        #[arg(long, value_name = "NAME_OR_ID")]
        product: String,
        /// Group name, unique in the product.
        name: String,
        #[command(flatten)]
        settings: GroupSettings,
    },
    /// List device groups.
    List {
        /// Only this product's groups (name or ID).
        #[arg(long, value_name = "NAME_OR_ID")]
        product: Option<String>,
    },
    /// Show a device group.
    Show {
        /// Group ID, or `PRODUCT/GROUP` by name (e.g. "Thermostat/Field Test").
        #[arg(value_name = "GROUP")]
        group: String,
    },
    /// Change a device group; only the given settings change.
    Update {
        /// Group ID, or `PRODUCT/GROUP` by name.
        #[arg(value_name = "GROUP")]
        group: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// Whether the group's devices send crash details with failure
        /// reports: the app's output tail and full backtrace (off by
        /// default, for privacy; off, only the top frames that identify a
        /// failure are kept)
        #[arg(long, value_enum, value_name = "on|off")]
        crash_details: Option<Switch>,
        #[command(flatten)]
        settings: GroupSettings,
        /// Maintenance window, `HH:MM-HH:MM` in UTC (e.g. "02:00-04:00";
        /// "22:00-02:00" spans midnight): devices apply updates that restart
        /// apps only inside it (they may download earlier; `agent update
        /// --now` overrides it).
        #[arg(
            long,
            value_name = "HH:MM-HH:MM",
            conflicts_with = "clear_update_window"
        )]
        update_window: Option<String>,
        /// Remove the maintenance window: updates apply at any time.
        #[arg(long)]
        clear_update_window: bool,
    },
    /// Delete a device group (refused while devices are in it).
    Delete {
        /// Group ID, or `PRODUCT/GROUP` by name.
        #[arg(value_name = "GROUP")]
        group: String,
    },
}

// ---------------------------------------------------------------- manufacturer

#[derive(Debug, Subcommand)]
pub(crate) enum ManufacturerCommand {
    /// Make a manufacturer CA on this machine: `ca.pem` (the certificate the
    /// server is told to trust) and `ca.key` (mode 0600; keep it secret).
    Init(ManufacturerInitArgs),
    /// Endorse a device's root-of-trust public key with a manufacturer CA
    /// (on this machine); prints the device ID.
    Endorse(ManufacturerEndorseArgs),
    /// Make the server trust a manufacturer CA, so the devices it endorses
    /// can be claimed (server administrators only).
    Trust(ManufacturerTrustArgs),
    /// List the manufacturer CAs the server trusts.
    List(ManufacturerListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ManufacturerInitArgs {
    /// Directory to write `ca.pem` and `ca.key` into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) out_dir: PathBuf,
    /// The CA's name (its certificate's common name).
    #[arg(long, default_value = "Sevenfold development manufacturer CA")]
    pub(crate) name: String,
    /// Validity of the CA certificate, in days.
    #[arg(long, value_name = "N", default_value_t = 3650)]
    pub(crate) days: u32,
    /// Replace an existing CA in the directory.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ManufacturerEndorseArgs {
    /// Directory holding the manufacturer CA (`ca.pem`, `ca.key`).
    #[arg(long, value_name = "DIR")]
    pub(crate) ca_dir: PathBuf,
    /// The device's root-of-trust public key (PEM).
    #[arg(long, value_name = "DEVICE_PUB.pem")]
    pub(crate) device_key: PathBuf,
    /// Endorsement certificate to write (PEM).
    #[arg(long, value_name = "CERT.pem")]
    pub(crate) out: PathBuf,
    /// Validity of the endorsement, in days (at most the CA's).
    #[arg(long, value_name = "N", default_value_t = 3650)]
    pub(crate) days: u32,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ManufacturerTrustArgs {
    /// The manufacturer CA certificate (PEM), e.g. `DIR/ca.pem` from
    /// `manufacturer init`.
    #[arg(value_name = "CA.pem")]
    pub(crate) certificate: PathBuf,
    /// What the CA is trusted for: `endorsement` (it endorses device keys,
    /// as `manufacturer endorse` does) or `tpm` (a TPM maker's root or
    /// intermediate CA, which signs TPM EK certificates for credential
    /// activation).
    #[arg(long, value_enum, default_value_t = ManufacturerKindArg::Endorsement)]
    pub(crate) kind: ManufacturerKindArg,
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
}

/// `--kind` of `manufacturer trust`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ManufacturerKindArg {
    /// Endorses device keys.
    Endorsement,
    /// Signs TPM endorsement key certificates.
    Tpm,
}

#[derive(Debug, Args)]
pub(crate) struct ManufacturerListArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
}

// ---------------------------------------------------------------- device

#[derive(Debug, Args)]
pub(crate) struct DeviceArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: DeviceCommand,
}

/// Which page(s) of a list to fetch.
#[derive(Debug, Args)]
pub(crate) struct PageArgs {
    /// Fetch every page (the server is asked page by page).
    #[arg(long, conflicts_with = "after")]
    pub(crate) all: bool,
    /// Page size, 1 to 1000 [default: the server's, 100]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) limit: Option<u32>,
    /// Start after this ID (the `next` of the previous page).
    #[arg(long, value_name = "ID")]
    pub(crate) after: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Claim a device for the tenant with its manufacturer's endorsement
    /// certificate. A device belongs to one tenant at a time.
    Claim {
        /// Device ID (64 hex characters).
        device_id: String,
        /// The device's endorsement certificate (PEM).
        #[arg(long, value_name = "CERT.pem")]
        endorsement: PathBuf,
    },
    /// List the tenant's devices (first page unless --all).
    List {
        /// Only devices in this group (ID, or `PRODUCT/GROUP`).
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a device.
    Show {
        /// Device ID.
        device_id: String,
    },
    /// Move a device into a device group.
    Assign {
        /// Device ID.
        device_id: String,
        /// Group ID, or `PRODUCT/GROUP` by name.
        #[arg(long, value_name = "GROUP")]
        group: String,
    },
    /// Put a device in development mode: it accepts sideloaded apps signed
    /// by the developer.
    EnableDevelopment {
        /// Device ID.
        device_id: String,
    },
    /// Return a device to field mode: only deployed, signed images (the
    /// opposite of enable-development).
    EnableFieldTest {
        /// Device ID.
        device_id: String,
    },
    /// Move devices between tenants: one tenant offers, the other accepts.
    #[command(subcommand)]
    Transfer(TransferCommand),
    /// Revoke a device: from now on it fails attestation and its certificate
    /// is refused (administrators).
    Revoke {
        /// Device ID.
        device_id: String,
    },
    /// Show a device's attestation verdicts, newest first: the latest with
    /// its reasons and measurements, then the history.
    Attestation {
        /// Device ID.
        device_id: String,
        /// How many verdicts, 1 to 1000 [default: the server's, 20]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TransferCommand {
    /// Offer one of the tenant's devices to another tenant (administrators).
    Start {
        /// Device ID.
        device_id: String,
        /// The destination tenant, by ID (or by name if you have a role there).
        #[arg(long, value_name = "TENANT")]
        to_tenant: String,
    },
    /// Accept a transfer offered to the tenant (its administrators).
    Accept {
        /// Transfer ID.
        transfer_id: String,
    },
    /// Cancel a pending transfer (administrators of either tenant).
    Cancel {
        /// Transfer ID.
        transfer_id: String,
    },
    /// List the transfers the tenant is part of, either side.
    List,
}

// ---------------------------------------------------------------- signing keys

#[derive(Debug, Args)]
pub(crate) struct SigningKeyArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: SigningKeyCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SigningKeyCommand {
    /// Register a public key (from `sevenfold keygen`) whose signatures the
    /// tenant's images may carry (administrators).
    Add {
        /// The public key (PEM), e.g. `KEY.pub.pem`.
        #[arg(value_name = "PUB.pem")]
        public_key: PathBuf,
        /// A label.
        #[arg(long)]
        name: String,
    },
    /// List the tenant's signing keys.
    List,
    /// Revoke a signing key: images it signs are refused from now on.
    Revoke {
        /// Key ID (64 hex characters).
        key_id: String,
    },
}

// ---------------------------------------------------------------- runtime releases

#[derive(Debug, Args)]
pub(crate) struct RuntimeArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(subcommand)]
    pub(crate) command: RuntimeCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RuntimeCommand {
    /// Runtime releases: the builds of the Sevenfold runtime a device may run
    /// and still pass attestation.
    #[command(subcommand)]
    Release(RuntimeReleaseCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum RuntimeReleaseCommand {
    /// Accept a runtime build: devices that measure it pass attestation
    /// (server administrators).
    // `--version` is the release's label here, not the program's version.
    #[command(disable_version_flag = true)]
    Add(RuntimeReleaseAddArgs),
    /// Revoke a runtime build: devices running it fail attestation from now
    /// on (server administrators).
    Revoke {
        /// The release's digest (64 hex characters).
        digest: String,
    },
    /// List the runtime builds the server knows, revoked ones included.
    List,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("build").required(true).args(["digest", "file"])))]
pub(crate) struct RuntimeReleaseAddArgs {
    /// SHA-256 of the runtime executable, 64 hex characters (as `sha256sum`
    /// prints it).
    #[arg(long, value_name = "HEX")]
    pub(crate) digest: Option<String>,
    /// The runtime executable; its SHA-256 is computed on this machine and
    /// only the digest is sent.
    #[arg(long, value_name = "PATH")]
    pub(crate) file: Option<PathBuf>,
    /// Version label, e.g. `1.4.0`.
    #[arg(long, value_name = "V")]
    pub(crate) version: String,
}

// ---------------------------------------------------------------- images

#[derive(Debug, Args)]
pub(crate) struct ImageAddArgs {
    /// The `*.imagepackage` file.
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
}

#[derive(Debug, Args)]
pub(crate) struct ImageListArgs {
    #[command(flatten)]
    pub(crate) page: PageArgs,
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
}

#[derive(Debug, Args)]
pub(crate) struct ImageShowArgs {
    /// Image ID (the package digest).
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
}

#[derive(Debug, Args)]
pub(crate) struct ImageDownloadArgs {
    /// Image ID (the package digest).
    pub(crate) id: String,
    /// File to write.
    #[arg(long, short)]
    pub(crate) out: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
}

// ---------------------------------------------------------------- audit

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// List the tenant's audit entries, oldest first (administrators).
    List {
        /// Only entries at or after this time (RFC 3339, e.g. 2025-01-31T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only entries by this user.
        #[arg(long, value_name = "USER")]
        actor: Option<String>,
        /// At most this many entries.
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Start after this sequence number (the `next` of a previous list).
        #[arg(long, value_name = "SEQ")]
        after: Option<i64>,
    },
    /// Check the whole audit hash chain; exits non-zero if it is broken.
    Verify,
}
