//! `run`'s start-up order: a SIGHUP sent while the collector restores its series from the
//! store (minutes on a big store) is applied once it serves, and does not end the process.
//!
//! Its own test binary: it sends SIGHUP to this process.

use std::time::Duration;

use stallwatch_collector::config;
use stallwatch_collector::demo::fleet::{FleetAgent, FleetSpec, free_relay_port, write_fleet};
use stallwatch_collector::server::{RunHooks, run_with};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_during_the_restore_is_applied_once_serving() {
    // A SIGHUP listener of the test's own keeps the signal from killing this binary if `run`
    // installed its handler only after the restore: the signal is then lost instead, and the
    // assertion below says so.
    let _ours = signal(SignalKind::hangup()).expect("SIGHUP listener");
    let scratch = stallwatch_tests::scratch_dir("startup-test");
    let dir = scratch.path();
    let spec = FleetSpec {
        relay_agent: "relay-sg-1".into(),
        relay_region: "sea".into(),
        relay_port: free_relay_port().unwrap(),
        agents: vec![FleetAgent::new("sea-4g-1", "sea", "4g", None, "360p30")],
        every: "20s",
        duration: "15s",
        report_interval: "5s",
        ingest: "127.0.0.1:0".into(),
        metrics: "127.0.0.1:0".into(),
    };
    let files = write_fleet(dir, &spec, time::OffsetDateTime::now_utc()).unwrap();
    let before = config::load(&files.config).unwrap().plans_revision();

    let (restoring_tx, restoring_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    let (serving_tx, serving_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let hooks = RunHooks {
        // The restore blocks until the test has sent its SIGHUP.
        restoring: Some(Box::new(move || {
            restoring_tx.send(()).unwrap();
            let _ = resume_rx.recv();
        })),
        serving: Some(Box::new(move |shared| {
            let _ = serving_tx.send(shared);
        })),
        stop: Some(stop_rx),
    };
    let path = files.config.clone();
    let run = tokio::spawn(async move { run_with(&path, hooks).await });

    tokio::task::spawn_blocking(move || restoring_rx.recv())
        .await
        .unwrap()
        .expect("the collector reaches its restore");
    // The edit the reload should pick up: a new plan.
    let text = std::fs::read_to_string(&files.config).unwrap();
    let edited = text.replace("duration = \"15s\"", "duration = \"14s\"");
    assert_ne!(edited, text, "the fleet config has a probe duration to edit");
    std::fs::write(&files.config, edited).unwrap();
    let after = config::load(&files.config).unwrap().plans_revision();
    assert_ne!(after, before);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    resume_tx.send(()).unwrap();

    let shared = serving_rx.await.expect("the collector serves after its restore");
    let mut revisions = shared.plans_revisions();
    let reloaded =
        tokio::time::timeout(Duration::from_secs(20), revisions.wait_for(|r| *r == after))
            .await
            .map(|r| r.is_ok());
    assert!(
        reloaded == Ok(true),
        "the SIGHUP sent during the restore was lost (plans revision still {}, want {after}): \
         is the handler installed only after the restore?",
        shared.live().revision
    );
    assert_eq!(shared.live().config.plans_revision(), after);
    drop(revisions);
    drop(shared);
    stop_tx.send(()).unwrap();
    run.await.unwrap().expect("run ends cleanly");
}
