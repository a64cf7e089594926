//! Delta updates end to end, with a real server and real agent processes:
//! a deployment carries deltas from the versions the group's devices run
//! and from its earlier deployments, made after `deployment create`
//! returns and signed into the group's targets when done; a device fetches
//! the delta from the version it runs instead of the image, rebuilds the
//! image and checks it against the signed target; a damaged delta falls
//! back to the full image; a device running a version the service does not
//! know of is not offered a delta at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;

use support::fleet::{active_sha256, device_row, file_sha256, update, Fleet, BLINK};

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// The delta blob the server stored for the tenant from `base` to `target`.
fn delta_blob(f: &Fleet, base: &Path, target: &Path) -> std::path::PathBuf {
    let path = f.server.data_dir.join(format!(
        "blobs/blobs/deltas/{}/{}-{}",
        f.tenant,
        file_sha256(base),
        file_sha256(target)
    ));
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// The delta a deployment lists from `base` (its length), from `show`.
fn listed_delta(shown: &serde_json::Value, base: &Path) -> u64 {
    let base = file_sha256(base);
    shown["deltas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["base_sha256"] == base.as_str())
        .unwrap_or_else(|| panic!("no delta from {base} in {shown}"))["length"]
        .as_u64()
        .unwrap()
}

/// The bytes the server sent for targets, by kind, from its metrics.
fn served(f: &Fleet, kind: &str) -> u64 {
    // A fresh connection each time: a pooled one may have been closed by
    // the server while the agent ran.
    let metrics = f.server.client(&f.token).get_raw("/metrics").1;
    let text = String::from_utf8_lossy(&metrics);
    let prefix = format!("sevenfold_update_bytes_served_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn an_update_uses_the_delta_from_the_installed_version_and_falls_back_when_it_fails() {
    let f = Fleet::start(&[]);
    let (v1, v1_file) = f.image("1.0.0", 1, "release");
    let (v0, v0_file) = f.image("0.9.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);
    // A device that runs another version than the group's previous one.
    let (other_state, _) = f.device("dev0", &v0_file);
    // v1 is the group's current version (dev1 already runs it).
    f.deploy(&v1, &[]);
    assert_eq!(update(&state)["outcomes"][0]["state"], "up-to-date");

    // v2 carries a delta from v1, signed into its target's metadata.
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    let d2 = f.deploy(&v2, &[]);
    let delta = delta_blob(&f, &v1_file, &v2_file);
    let delta_len = file_len(&delta);
    let full_len = file_len(&v2_file);
    assert!(delta_len * 10 < full_len, "{delta_len} vs {full_len}");
    let full_before = served(&f, "full");

    let report = update(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], true, "{report}");
    assert_eq!(outcome["downloaded_bytes"], delta_len, "{report}");
    assert_eq!(report["attestation"], "pass", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
    assert_eq!(device_row(&f.show(&d2), &device)["state"], "installed");
    // The server sent the delta, not the image.
    assert_eq!(served(&f, "delta"), delta_len);
    assert_eq!(served(&f, "full"), full_before);

    // A device on v0 that never attested: the service does not know what
    // it runs, the delta's base is not its image, so it fetches the full
    // v2 and still installs it.
    let report = update(&other_state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], false, "{report}");
    assert_eq!(outcome["delta_fallback"], serde_json::Value::Null);
    assert_eq!(outcome["downloaded_bytes"], full_len, "{report}");
    assert_eq!(active_sha256(&other_state), file_sha256(&v2_file));
    assert_ne!(v0, v1);

    // v3: its delta from v2 is damaged on the server after publication.
    // The device refuses it (hash against the signed delta), fetches the
    // full v3, installs it, and says why.
    let (v3, v3_file) = f.image("3.0.0", 3, "release");
    f.deploy(&v3, &[]);
    let delta = delta_blob(&f, &v2_file, &v3_file);
    let mut bytes = std::fs::read(&delta).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&delta, bytes).unwrap();
    let report = update(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], false, "{report}");
    let why = outcome["delta_fallback"].as_str().unwrap();
    assert!(why.contains("does not match the signed"), "{why}");
    assert_eq!(outcome["downloaded_bytes"], file_len(&v3_file), "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v3_file));
    let slot =
        std::fs::read_to_string(state.join(format!("updates/slots/{BLINK}/slot.toml"))).unwrap();
    assert!(slot.contains("security_version = 3"), "{slot}");
}

#[test]
fn a_device_two_versions_behind_gets_a_delta_from_the_version_it_runs() {
    let f = Fleet::start(&[]);
    let (v1, v1_file) = f.image("1.0.0", 1, "release");
    let (behind, _) = f.device("behind", &v1_file);
    let (current, _) = f.device("current", &v1_file);
    f.deploy(&v1, &[]);
    // Both attest: the service learns they run v1.
    for state in [&behind, &current] {
        assert_eq!(update(state)["outcomes"][0]["state"], "up-to-date");
    }
    // The group goes to v2; only one device follows.
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    f.deploy(&v2, &[]);
    let report = update(&current);
    assert_eq!(report["outcomes"][0]["delta_used"], true, "{report}");

    // v3: deltas from what the devices run, v1 and v2.
    let (v3, v3_file) = f.image("3.0.0", 3, "release");
    let d3 = f.deploy(&v3, &[]);
    let shown = f.show(&d3);
    assert_eq!(shown["deltas"].as_array().unwrap().len(), 2, "{shown}");
    let from_v1 = listed_delta(&shown, &v1_file);
    let from_v2 = listed_delta(&shown, &v2_file);
    let versions: Vec<&str> = shown["deltas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["base_version"].as_str().unwrap())
        .collect();
    assert!(
        versions.contains(&"1.0.0") && versions.contains(&"2.0.0"),
        "{shown}"
    );
    assert_eq!(
        from_v1,
        file_len(&delta_blob(&f, &v1_file, &v3_file)),
        "{shown}"
    );

    // Two versions behind: v3 through the delta from v1.
    let served_before = served(&f, "delta");
    let full_before = served(&f, "full");
    let report = update(&behind);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], true, "{report}");
    assert_eq!(outcome["downloaded_bytes"], from_v1, "{report}");
    assert_eq!(served(&f, "delta") - served_before, from_v1);
    assert_eq!(served(&f, "full"), full_before);
    assert_eq!(active_sha256(&behind), file_sha256(&v3_file));

    // One version behind: through the delta from v2.
    let report = update(&current);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], true, "{report}");
    assert_eq!(outcome["downloaded_bytes"], from_v2, "{report}");
    assert_eq!(served(&f, "delta") - served_before, from_v1 + from_v2);
    assert_eq!(active_sha256(&current), file_sha256(&v3_file));
}

/// The group's signed targets versions, oldest first, from the server's
/// database: (version, the targets' custom metadata by target name).
fn signed_targets(f: &Fleet) -> Vec<(i64, serde_json::Value)> {
    let url = format!(
        "sqlite://{}",
        f.server.data_dir.join("sevenfold.db").display()
    );
    let group = f.group.clone();
    let rows: Vec<(i64, Vec<u8>)> = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::{Connection, Row};
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            let rows = sqlx::query(
                "SELECT version, body FROM tuf_metadata WHERE group_id = $1 \
                 AND role = 'targets' ORDER BY version",
            )
            .bind(&group)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            rows.iter()
                .map(|r| (r.get::<i64, _>("version"), r.get::<Vec<u8>, _>("body")))
                .collect()
        });
    rows.into_iter()
        .map(|(version, body)| {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (version, json["signed"]["targets"].clone())
        })
        .collect()
}

#[test]
fn deployment_create_returns_before_its_deltas_are_made_and_they_are_signed_in_afterwards() {
    let f = Fleet::start(&[]);
    let (v1, v1_file) = f.image("1.0.0", 1, "release");
    let (state, _) = f.device("dev1", &v1_file);
    f.deploy(&v1, &[]);
    assert_eq!(update(&state)["outcomes"][0]["state"], "up-to-date");

    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    let created = f.create_deployment(&v2, &[]);
    // The answer came before any delta was made.
    assert_eq!(created["deltas_state"], "making", "{created}");
    assert_eq!(created["deltas"], serde_json::json!([]), "{created}");
    let d2 = created["id"].as_str().unwrap().to_owned();
    let shown = f.wait_for_deltas(&d2);
    let length = listed_delta(&shown, &v1_file);

    // The deployment was signed first with the full image only, then
    // again with the delta from v1 added.
    let base = file_sha256(&v1_file);
    let with_d2: Vec<(i64, serde_json::Value)> = signed_targets(&f)
        .into_iter()
        .filter_map(|(version, targets)| {
            let target = targets
                .as_object()
                .unwrap()
                .values()
                .find(|t| t["custom"]["deployment_id"] == d2.as_str())?
                .clone();
            Some((version, target))
        })
        .collect();
    assert!(with_d2.len() >= 2, "{with_d2:?}");
    let (first, without) = &with_d2[0];
    assert!(without["custom"].get("delta").is_none(), "{without}");
    assert_eq!(without["hashes"]["sha256"], file_sha256(&v2_file).as_str());
    let (last, with) = with_d2.last().unwrap();
    assert!(last > first);
    assert_eq!(with["custom"]["delta"][&base]["length"], length, "{with}");

    // The device takes the delta now.
    let report = update(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], true, "{report}");
    assert_eq!(outcome["downloaded_bytes"], length, "{report}");
}

/// blink's module with a custom section of `len` pseudo-random bytes
/// (seeded) appended: still a valid module that runs as blink, large
/// enough that making a delta takes a while.
fn padded_blink(f: &Fleet, name: &str, seed: u64, len: usize) -> std::path::PathBuf {
    let mut module =
        std::fs::read(Path::new(env!("SEVENFOLD_SAMPLE_WASM_DIR")).join("blink.wasm")).unwrap();
    let mut padding = Vec::with_capacity(len);
    let mut x = seed | 1;
    while padding.len() < len {
        // xorshift64: cheap, repeatable filler.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        padding.extend_from_slice(&x.to_le_bytes());
    }
    padding.truncate(len);
    let section_name = b"padding";
    let mut body = leb128(section_name.len());
    body.extend_from_slice(section_name);
    body.extend_from_slice(&padding);
    module.push(0); // custom section
    module.extend(leb128(body.len()));
    module.extend(body);
    let path = f.path(name);
    std::fs::write(&path, module).unwrap();
    path
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn a_server_killed_while_making_deltas_has_them_made_once_its_claim_runs_out() {
    // A 2 s claim on the job, so the restarted server takes it over soon.
    let env = [("SEVENFOLD_DELTA_LEASE_SECS", "2")];
    let mut f = Fleet::start(&env);
    let v1_wasm = padded_blink(&f, "blink-1.wasm", 7, 4 << 20);
    let (v1, v1_file) = f.image_from("1.0.0", 1, "release", &v1_wasm);
    let (state, _) = f.device("dev1", &v1_file);
    f.deploy(&v1, &[]);
    assert_eq!(update(&state)["outcomes"][0]["state"], "up-to-date");

    // v2: the same padding with one stretch in the middle changed.
    let mut v2_wasm = std::fs::read(&v1_wasm).unwrap();
    let middle = v2_wasm.len() / 2;
    for b in &mut v2_wasm[middle..middle + 4096] {
        *b ^= 0x5a;
    }
    let v2_path = f.path("blink-2.wasm");
    std::fs::write(&v2_path, &v2_wasm).unwrap();
    let (v2, v2_file) = f.image_from("2.0.0", 2, "release", &v2_path);
    let created = f.create_deployment(&v2, &[]);
    assert_eq!(created["deltas_state"], "making", "{created}");
    let d2 = created["id"].as_str().unwrap().to_owned();

    // The server dies while making the delta (bsdiff of 4 MiB takes far
    // longer than this) and comes back on the same data and ports.
    f.server.crash_and_restart(None, &env);
    assert_eq!(
        f.show(&d2)["deltas_state"],
        "making",
        "the job was abandoned mid-way"
    );

    // Its housekeeping takes the job over once the dead claim runs out,
    // makes the delta and signs it in.
    let shown = f.wait_for_deltas(&d2);
    let length = listed_delta(&shown, &v1_file);
    assert!(length < file_len(&v2_file) / 10, "{shown}");
    let report = update(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], true, "{report}");
    assert_eq!(outcome["downloaded_bytes"], length, "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
}
