#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Supervisor lifecycle with real apps: crash-loop back-off, kill after the
//! grace period, the on-disk module cache.

mod common;

use std::time::Duration;

use common::*;
use sevenfold_compartment::{
    backoff, AppRunState, CompartmentEvent, RunSettings, SupervisorConfig,
};
use uuid::Uuid;

#[test]
fn a_crash_loop_backs_off_exponentially() {
    let rig = rig(test_config(), None);
    rig.supervisor
        .start(image("hostile-trap", manifest("hostile-trap", 5)))
        .unwrap();
    eventually("five restarts", Duration::from_secs(60), || {
        rig.events
            .of(5)
            .iter()
            .filter(|e| matches!(e, CompartmentEvent::Restarting { .. }))
            .count()
            >= 5
    });
    let events = rig.events.events();
    let restarts: Vec<(std::time::Instant, Duration)> = events
        .iter()
        .filter_map(|(at, e)| match e {
            CompartmentEvent::Restarting { delay, .. } => Some((*at, *delay)),
            _ => None,
        })
        .take(5)
        .collect();
    let delays: Vec<u128> = restarts.iter().map(|(_, d)| d.as_millis()).collect();
    assert_eq!(delays, [50, 100, 200, 400, 800]);
    // The delays are really waited: restart k+1 comes at least delay k after restart k.
    for pair in restarts.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= pair[0].1, "{pair:?}");
    }
    let status = rig.supervisor.status();
    assert!(status[0].restarts >= 5);
    assert!(matches!(
        status[0].state,
        AppRunState::BackingOff | AppRunState::Running
    ));
    assert_eq!(
        backoff(20, Duration::from_millis(50), Duration::from_millis(800)),
        Duration::from_millis(800)
    );
}

#[test]
fn a_spinning_app_is_killed_after_the_grace_period() {
    let config = SupervisorConfig {
        grace: Duration::from_millis(200),
        run: RunSettings {
            cpu_budget: Duration::from_secs(600),
        },
        ..test_config()
    };
    let rig = rig(config, None);
    rig.supervisor
        .start(image("hostile-spin", manifest("hostile-spin", 6)))
        .unwrap();
    rig.supervisor
        .start(image("blink", manifest("blink", 7).gpio([8])))
        .unwrap();
    eventually("spin to be spinning", Duration::from_secs(30), || {
        output(&rig, 6).contains("spinning")
    });
    assert!(
        rig.supervisor.stop(Uuid::from_u128(6)).unwrap(),
        "spin ignores should_stop and is killed"
    );
    rig.events
        .wait_for(6, "stopped", Duration::from_secs(1), |e| {
            matches!(e, CompartmentEvent::Stopped { killed: true, .. })
        });
    assert_eq!(rig.supervisor.status()[0].state, AppRunState::Stopped);
    // blink was never disturbed.
    let toggles = rig.peripherals.toggles(8);
    eventually("blink to keep toggling", Duration::from_secs(10), || {
        rig.peripherals.toggles(8) > toggles + 3
    });
}

#[test]
fn compiled_modules_are_cached_on_disk_and_reused_by_a_new_engine() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("module-cache");
    let image = image("notes", manifest("notes", 8));
    let first = sevenfold_compartment::CompartmentEngine::new(&cache).unwrap();
    first.module("notes", image.digest(), image.wasm()).unwrap();
    let files = modules(&cache);
    assert!(!files.is_empty(), "the compiled module is on disk");
    drop(first);
    // A second engine (an agent restart) finds it: no new cache entry appears.
    let second = sevenfold_compartment::CompartmentEngine::new(&cache).unwrap();
    second
        .module("notes", image.digest(), image.wasm())
        .unwrap();
    assert_eq!(modules(&cache), files);
    assert!(second
        .module("bad", &sevenfold_rot::Digest::of(b"x"), b"not wasm")
        .is_err());
}

/// Cached modules. wasmtime also keeps usage statistics beside them and
/// writes those, and its clean-up markers, from a background worker
/// through temporary `*.wip-*` files, which come and go at any moment.
fn modules(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "stats"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().contains(".wip-"))
        })
        .collect();
    files.sort();
    files
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_spinning_app_is_stopped_past_its_cpu_budget() {
    let rig = rig(test_config(), None);
    rig.supervisor
        .start(image("hostile-spin", manifest("hostile-spin", 9)))
        .unwrap();
    let hit = rig
        .events
        .wait_for(9, "CPU limit", Duration::from_secs(30), |e| {
            matches!(
                e,
                CompartmentEvent::LimitHit {
                    limit: sevenfold_compartment::Limit::Cpu,
                    ..
                }
            )
        });
    assert!(hit.to_string().contains("CPU budget"), "{hit}");
    rig.events
        .wait_for(9, "restart", Duration::from_secs(5), |e| {
            matches!(e, CompartmentEvent::Restarting { .. })
        });
    assert!(rig.supervisor.status()[0].cpu >= Duration::from_millis(300));
}

#[test]
fn app_output_is_kept_in_a_log_file_per_component() {
    let logs = tempfile::tempdir().unwrap();
    let config = SupervisorConfig {
        log_dir: Some(logs.path().to_path_buf()),
        ..test_config()
    };
    let rig = rig(config, None);
    rig.supervisor
        .start(image("blink", manifest("blink", 71).gpio([8])).with_env("BLINK_TOGGLES", "3"))
        .unwrap();
    rig.events
        .wait_for(71, "exit", Duration::from_secs(30), |e| {
            matches!(e, CompartmentEvent::Exited { code: 0, .. })
        });
    let log =
        std::fs::read_to_string(logs.path().join(format!("{}.log", Uuid::from_u128(71)))).unwrap();
    assert_eq!(log, "blink: GPIO 8 high (1)\nblink: GPIO 8 low (2)\nblink: GPIO 8 high (3)\nblink: done after 3 toggles\n");
}
