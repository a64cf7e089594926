//! `sevenfold tenant ca download|prove|rotate`: the tenant's device CA.
//!
//! Devices get short-lived certificates from their tenant's CA after a
//! successful attestation; third-party services (an MQTT broker, say) trust
//! the tenant's devices by trusting this CA. `download` writes every
//! published generation, so a service keeps accepting certificates issued
//! before a `rotate`.

use std::path::PathBuf;
use std::process::ExitCode;

use reqwest::Method;
use serde::Serialize;
use sevenfold_core::api::{ProofOfPossession, ProofOfPossessionRequest, TenantCaInfo};

use crate::cli::{OutputMode, TenantCaCommand};
use crate::client::Client;
use crate::files;
use crate::output::{fields, success, table, Render};

/// `tenant ca download`: the file written and the generations in it.
#[derive(Serialize)]
struct CaDownload {
    file: PathBuf,
    /// Newest first, as in the file.
    generations: Vec<TenantCaInfo>,
}

impl Render for CaDownload {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .generations
            .iter()
            .map(|g| {
                vec![
                    g.generation.to_string(),
                    g.fingerprint.clone(),
                    g.not_after.clone(),
                ]
            })
            .collect();
        let count = self.generations.len();
        format!(
            "Wrote {count} tenant CA certificate{} to {} (newest first)\n{}\
             Give this file to the services that authenticate the tenant's devices \
             (e.g. as an MQTT broker's CA file); after `sevenfold tenant ca rotate`, download it again.\n",
            if count == 1 { "" } else { "s" },
            self.file.display(),
            table(&["GENERATION", "FINGERPRINT", "EXPIRES"], &rows, ""),
        )
    }
}

/// `tenant ca prove`: the signed certificate, and where it was written.
#[derive(Serialize)]
struct ProofReport {
    file: PathBuf,
    certificate_pem: String,
    #[serde(skip)]
    code: String,
}

impl Render for ProofReport {
    fn human(&self) -> String {
        format!(
            "Wrote the proof of possession for verification code {:?} to {}\n\
             Upload it to the service that asked for the code.\n",
            self.code,
            self.file.display()
        )
    }
}

/// `tenant ca rotate`: the new generation.
#[derive(Serialize)]
#[serde(transparent)]
struct Rotated(TenantCaInfo);

impl Render for Rotated {
    fn human(&self) -> String {
        format!(
            "Tenant CA generation {} issues device certificates from now on\n{}\
             Earlier generations stay published until they expire: run \
             `sevenfold tenant ca download --out FILE` again and give the new file \
             to the services that trust the tenant's devices.\n",
            self.0.generation,
            fields(&[
                ("fingerprint", self.0.fingerprint.clone()),
                ("valid until", self.0.not_after.clone()),
            ])
        )
    }
}

pub(crate) async fn run(
    mode: OutputMode,
    client: &Client,
    command: TenantCaCommand,
) -> anyhow::Result<ExitCode> {
    let tenant = client.tenant_id().await?;
    match command {
        TenantCaCommand::Download { out, force } => {
            let generations: Vec<TenantCaInfo> =
                client.get(&["tenants", &tenant, "ca"], &[]).await?;
            anyhow::ensure!(
                !generations.is_empty(),
                "the tenant has no unexpired CA certificate; make a new one with \
                 `sevenfold tenant ca rotate` (administrators), then download again"
            );
            files::write_new(&out, chain_pem(&generations).as_bytes(), 0o644, force)?;
            success(
                mode,
                &CaDownload {
                    file: out,
                    generations,
                },
            )
        }
        TenantCaCommand::Prove { code, out, force } => {
            anyhow::ensure!(
                !code.trim().is_empty(),
                "--code is empty; pass the verification code the third-party service showed you"
            );
            // Refuse before asking the server to sign (and audit) anything.
            anyhow::ensure!(
                force || !out.exists(),
                "{} already exists; pass --force to replace it",
                out.display()
            );
            let proof: ProofOfPossession = client
                .call(
                    Method::POST,
                    &["tenants", &tenant, "ca", "proof-of-possession"],
                    Some(&ProofOfPossessionRequest {
                        verification_code: code.clone(),
                    }),
                )
                .await?;
            files::write_new(&out, proof.certificate_pem.as_bytes(), 0o644, force)?;
            success(
                mode,
                &ProofReport {
                    file: out,
                    certificate_pem: proof.certificate_pem,
                    code,
                },
            )
        }
        TenantCaCommand::Rotate => {
            let rotated: TenantCaInfo = client
                .call::<(), _>(Method::POST, &["tenants", &tenant, "ca", "rotate"], None)
                .await?;
            success(mode, &Rotated(rotated))
        }
    }
}

/// The certificates one after the other, each ending in a newline.
fn chain_pem(generations: &[TenantCaInfo]) -> String {
    let mut pem = String::new();
    for generation in generations {
        pem.push_str(generation.certificate_pem.trim_end());
        pem.push('\n');
    }
    pem
}

#[cfg(test)]
mod tests {
    use sevenfold_core::api::TenantCaInfo;

    fn generation(n: i64, pem: &str) -> TenantCaInfo {
        TenantCaInfo {
            generation: n,
            fingerprint: format!("{n:064}"),
            not_after: "2035-01-01T00:00:00Z".into(),
            certificate_pem: pem.into(),
        }
    }

    #[test]
    fn the_chain_keeps_the_order_and_ends_each_certificate_with_a_newline() {
        let chain = super::chain_pem(&[
            generation(
                2,
                "-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----",
            ),
            generation(
                1,
                "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n\n",
            ),
        ]);
        assert_eq!(
            chain,
            "-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"
        );
    }
}
