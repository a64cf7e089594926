//! Update windows and app deferrals end to end (real server and agent
//! processes): outside the group's window an update is downloaded and
//! verified but not applied; inside it, it is applied from the staged copy;
//! `agent update --now` overrides the window; an app's deferral request
//! holds an update back until it runs out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;

use support::fleet::{active_sha256, device_row, file_sha256, update, Fleet, BLINK};
use support::{ok_json, s};

/// `HH:MM-HH:MM` from `from` to `to` hours away from now (UTC).
fn window(from: i64, to: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let hm = |offset: i64| {
        let t = (now + offset * 3600).rem_euclid(86_400);
        format!("{:02}:{:02}", t / 3600, t % 3600 / 60)
    };
    format!("{}-{}", hm(from), hm(to))
}

/// `agent update` as the scheduled check runs it (no `--now`).
fn scheduled(state: &Path) -> serde_json::Value {
    ok_json(&["agent", "update", "--state-dir", s(state)])
}

fn set_window(f: &Fleet, window: Option<&str>) -> serde_json::Value {
    let mut args = vec!["device-group", "update", &f.group, "--tenant", "acme"];
    match window {
        Some(w) => args.extend(["--update-window", w]),
        None => args.push("--clear-update-window"),
    }
    f.op(&args)
}

#[test]
fn updates_wait_for_the_window_and_for_an_app_deferral_and_now_overrides_them() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);

    // A window that opens in two hours: v2 is fetched but not applied.
    let closed = window(2, 3);
    let shown = set_window(&f, Some(&closed));
    assert_eq!(shown["update_window"], closed.as_str(), "{shown}");
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    let d2 = f.deploy(&v2, &[]);
    let report = scheduled(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "waiting", "{report}");
    assert!(outcome["reason"]
        .as_str()
        .unwrap()
        .contains(&format!("outside the group's update window {closed}")));
    assert_eq!(
        outcome["downloaded_bytes"],
        std::fs::metadata(&v2_file).unwrap().len()
    );
    assert_eq!(report["changed"], false);
    // The next round is due when the window opens, not an interval later.
    let next = report["next_round_in_secs"].as_u64().unwrap();
    assert!((7080..=7200).contains(&next), "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v1_file));
    let row = f.show(&d2);
    assert_eq!(device_row(&row, &device)["state"], "downloading", "{row}");
    assert!(device_row(&row, &device)["reason"]
        .as_str()
        .unwrap()
        .contains("update window"));

    // The window is open now: applied from the verified staged copy,
    // nothing downloaded again.
    set_window(&f, Some(&window(-1, 1)));
    let report = scheduled(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["downloaded_bytes"], 0, "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
    assert_eq!(device_row(&f.show(&d2), &device)["state"], "installed");

    // Closed again: `--now` overrides it.
    set_window(&f, Some(&closed));
    let (v3, v3_file) = f.image("3.0.0", 3, "release");
    f.deploy(&v3, &[]);
    assert_eq!(scheduled(&state)["outcomes"][0]["state"], "waiting");
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "installed", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v3_file));

    // No window; the app asks (through its own storage) to defer its
    // update by 3 s: held back, then applied once the time is up.
    let cleared = set_window(&f, None);
    assert_eq!(
        cleared["update_window"],
        serde_json::Value::Null,
        "{cleared}"
    );
    let storage = state.join(format!("app-storage/{BLINK}"));
    std::fs::create_dir_all(&storage).unwrap();
    std::fs::write(storage.join("sevenfold-defer-update"), "3\n").unwrap();
    let (v4, v4_file) = f.image("4.0.0", 4, "release");
    f.deploy(&v4, &[]);
    let report = scheduled(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "waiting", "{report}");
    assert!(
        outcome["reason"]
            .as_str()
            .unwrap()
            .contains("deferred by the app"),
        "{report}"
    );
    assert!(report["next_round_in_secs"].as_u64() <= Some(3), "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v3_file));
    std::thread::sleep(std::time::Duration::from_secs(4));
    let report = scheduled(&state);
    assert_eq!(report["outcomes"][0]["state"], "installed", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v4_file));
}

#[test]
fn a_bad_update_window_is_refused() {
    let f = Fleet::start(&[]);
    let err = support::cli_err(
        &f.server,
        &f.token,
        &f.path("config"),
        &[
            "device-group",
            "update",
            &f.group,
            "--update-window",
            "2am-4am",
            "--tenant",
            "acme",
        ],
    );
    assert!(err.contains("HH:MM-HH:MM"), "{err}");
}

/// A running agent checks again when a held update's hold lifts, not an
/// update interval (here an hour) later.
#[test]
fn a_running_agent_applies_a_held_update_when_its_hold_lifts() {
    use std::io::{BufRead, BufReader};

    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, _) = f.device("dev1", &v1_file);
    let storage = state.join(format!("app-storage/{BLINK}"));
    std::fs::create_dir_all(&storage).unwrap();
    std::fs::write(storage.join("sevenfold-defer-update"), "5\n").unwrap();
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    f.deploy(&v2, &[]);

    let mut agent = std::process::Command::new(support::bin())
        .args(["--output", "json", "agent", "run", "--state-dir", s(&state)])
        .args(["--update-interval", "3600"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = agent.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                if value["event"] == "update" && tx.send(value).is_err() {
                    break;
                }
            }
        }
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("no update round");
    assert_eq!(first["outcomes"][0]["state"], "waiting", "{first}");
    let held_at = std::time::Instant::now();
    let second = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("no second round within 30 s of the hold (the interval is an hour)");
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(second["outcomes"][0]["state"], "installed", "{second}");
    assert!(held_at.elapsed() >= std::time::Duration::from_secs(3));
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
}
