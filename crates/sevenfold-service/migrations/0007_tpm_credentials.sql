-- Sevenfold Security Service: TPM credential activation (issue 8).
-- Same common dialect as 0001 (see there).

-- A trusted CA is of one of two kinds: `endorsement` CAs sign Sevenfold
-- endorsement certificates over device keys (what claims check); `tpm` CAs
-- are TPM makers' CAs, which sign TPM endorsement key (EK) certificates
-- (what credential activation checks). Neither is accepted for the other.
ALTER TABLE manufacturer_cas
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'endorsement' CHECK (kind IN ('endorsement', 'tpm'));

-- Credential-activation challenges waiting for the device's answer: a
-- secret encrypted by TPM2_MakeCredential to the device's EK and bound to
-- its attestation key's name. Only the secret's SHA-256 is kept. In the
-- database so that any replica can check an answer; single use (deleted
-- when answered), short-lived, at most one per device.
CREATE TABLE tpm_credential_challenges (
    id                TEXT   PRIMARY KEY,
    device_id         TEXT   NOT NULL UNIQUE,
    ak_name           TEXT   NOT NULL,
    ek_cert_der       BYTEA  NOT NULL,
    ek_ca_fingerprint TEXT   NOT NULL,
    secret_sha256     TEXT   NOT NULL,
    expires_at        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX tpm_credential_challenges_expiry ON tpm_credential_challenges (expires_at);

-- Completed activations: this device's attestation key (name, hex) lives
-- in the TPM whose EK certificate this is. The verifier accepts TPM quotes
-- only from a device with a row here whose EK still chains to a trusted
-- `tpm` CA.
CREATE TABLE tpm_bindings (
    device_id         TEXT   PRIMARY KEY,
    ak_name           TEXT   NOT NULL,
    ek_cert_der       BYTEA  NOT NULL,
    ek_fingerprint    TEXT   NOT NULL,
    ek_ca_fingerprint TEXT   NOT NULL,
    activated_at      BIGINT NOT NULL
);
