//! The acceptance scenarios of issue 11, and a few more rule kinds, in virtual time.

use super::*;
use crate::alerts::config::{AlertsConfig, Webhook, WebhookFormat};
use crate::alerts::incidents::Status;
use crate::alerts::notifiers::delivery::due;
use crate::alerts::source::WEEK_MS;
use crate::alerts::state::Notified;
use crate::alerts::{Method, Signal};
use crate::config::Relay;

const REGIONS: [&str; 3] = ["sea", "latam", "eu"];

fn steady_agents(
    names: &'static [(&'static str, &'static str, &'static str)],
) -> Box<dyn Fn(u64) -> Vec<AgentFacts>> {
    Box::new(move |now| names.iter().map(|(n, r, t)| agent(n, r, t, now - 5_000)).collect())
}

fn hook(min_severity: Severity) -> Webhook {
    Webhook {
        name: "chat".into(),
        format: WebhookFormat::Slack,
        url: "https://hooks.example/x".into(),
        secret: None,
        min_severity,
    }
}

/// The stall ratio of the ramp scenario: 0.1 % until `ramp`, then up 1.9 points an hour to
/// 2 %, with +-10 % noise; other regions stay at 0.1 %.
fn ramp_ratio(region: &str, m: u64, ramp: u64) -> f64 {
    let base = 0.001;
    let clean = if region == "sea" && m >= ramp {
        (base + (m - ramp) as f64 / min(60) as f64 * 0.019).min(0.02)
    } else {
        base
    };
    clean * (1.0 + 0.1 * noise(m / MINUTE_MS * 7 + region.len() as u64))
}

#[test]
fn a_slow_ramp_in_one_region_warns_p2_early_then_p1_when_it_crosses_the_slo() {
    let start = T0 + 4 * WEEK_MS + 10 * HOUR_MS;
    let ramp = start + min(60);
    let cohorts = REGIONS.iter().map(|r| cohort(r, "4g", "quic-stream")).collect();
    let fake = Fake::new(
        cohorts,
        Box::new(move |c, m, _| Some(Minute::viewing(3, ramp_ratio(&c.region, m, ramp), 0.001))),
    );
    let mut run = Run::new(fake, default_settings());
    run.agents = steady_agents(&[
        ("sea-4g-1", "sea", "4g"),
        ("latam-4g-1", "latam", "4g"),
        ("eu-4g-1", "eu", "4g"),
    ]);
    run.run(start + 17_000, ramp + min(80), min(1));

    let crossing = (0..120)
        .map(|i| ramp + min(i))
        .find(|&m| ramp_ratio("sea", m, ramp) >= 0.01)
        .expect("the ramp crosses 1 %");
    let p2 = run.first(Alert::Stalls, "sea", Severity::P2).expect("a P2 for sea");
    assert!(
        p2.at + min(5) <= crossing,
        "P2 at +{} min, the ramp crosses 1 % at +{} min: less than 5 minutes ahead",
        (p2.at - ramp) / MINUTE_MS,
        (crossing - ramp) / MINUTE_MS
    );
    assert_eq!(p2.transition.to, Severity::P2);
    assert!(
        p2.incident
            .methods
            .iter()
            .any(|m| matches!(m, Method::Trend | Method::Baseline | Method::PeerOutlier)),
        "{:?}",
        p2.incident
    );
    let p1 = run.first(Alert::Stalls, "sea", Severity::P1).expect("a P1 for sea");
    eprintln!(
        "ramp: P2 at +{:.1} min ({:?}), crossing at +{} min, P1 at +{:.1} min",
        (p2.at - ramp) as f64 / 60e3,
        p2.incident.methods,
        (crossing - ramp) / MINUTE_MS,
        (p1.at - ramp) as f64 / 60e3
    );
    let settled = crossing + min(1) + 30_000;
    assert!(p1.at >= settled, "P1 before the crossing minute was even judged");
    assert!(
        p1.at <= settled + min(5),
        "P1 {} s after the crossing minute settled",
        (p1.at - settled) / 1000
    );
    assert_eq!(
        p1.transition.change,
        Change::Escalated,
        "the P2 incident escalated, no second incident"
    );
    assert_eq!(p1.transition.id, p2.transition.id);
    assert!(p1.incident.methods.contains(&Method::Threshold), "{:?}", p1.incident.methods);
    assert!(p1.incident.evidence[0].text.contains("1.00 %"), "{}", p1.incident.evidence[0].text);
    assert_eq!(run.worst(), Some(Severity::P1), "one region is not the whole service");
    assert!(
        run.changes().all(|s| s.incident.scope.region == "sea"),
        "healthy regions raised something"
    );
}

/// sea/4g/udp with one viewer reporting every 5 s (250 packets a report, 3000 a minute);
/// in minutes 5 to 9 after `start`, 5 % of them lost.
fn loss_reported_as_it_goes(start: u64) -> Run {
    let fault = start + min(5)..start + min(10);
    let mut fake = Fake::new(
        vec![cohort("sea", "4g", "udp")],
        Box::new(move |_, m, now| {
            let reports = now.saturating_sub(m).min(MINUTE_MS) / 5_000;
            let loss = if fault.contains(&m) { 0.05 } else { 0.0 };
            let whole = Minute::viewing(1, 0.0, loss);
            let mut part = Minute::default();
            for (name, v) in &whole.counters {
                part.add(name, v * reports / 12);
            }
            (reports > 0).then_some(part)
        }),
    );
    fake.in_progress = true;
    let mut run = Run::new(fake, default_settings());
    run.agents = steady_agents(&[("sea-4g-1", "sea", "4g")]);
    run.run(start + 5_000, start + min(25), 5_000);
    run
}

#[test]
fn a_fault_plain_in_the_minute_in_progress_fires_then_and_clears_only_on_settled_minutes() {
    let start = T0 + 4 * WEEK_MS + 3 * HOUR_MS;
    let run = loss_reported_as_it_goes(start);
    let p1 = run.first(Alert::Loss, "sea", Severity::P1).expect("a loss P1");
    // Two of three minutes must breach. Minute 5 is whole at 6:00 but settles only at 6:30
    // (the default 30 s settle); minute 6 breaches however it ends once its lost packets are
    // 1 % of a whole minute's 3000 (minute 4's): 30, after three reports of 12.5, at 6:15.
    // Judged on settled minutes alone this was 7:30.
    assert_eq!(p1.at - start, min(6) + 15_000, "{:?}", p1.incident.evidence);
    let text = &p1.incident.evidence[0].text;
    assert!(text.contains("2 of the last 3 judged minutes, 2 of them not yet settled"), "{text}");
    // Clearing waits for three settled minutes below the exit level: minutes 10-12, settled at
    // 13:30; the P1 ends `resolve_after` (5 minutes) later. The clean minutes in progress from
    // 10:00 clear nothing sooner. (What stays is a P2: the hour's loss still burns the SLO.)
    let ended = run
        .changes()
        .find(|s| s.transition.from == Some(Severity::P1))
        .unwrap_or_else(|| panic!("the P1 never ended: {:?}", run.seen));
    assert_eq!(ended.at - start, min(13) + 30_000 + min(5), "{:?}", ended.transition);
}

#[test]
fn a_step_outage_of_publishing_in_two_regions_is_a_p0_within_two_evaluations() {
    let start = T0 + 4 * WEEK_MS + 3 * HOUR_MS;
    let outage = start + min(30);
    let cohorts = REGIONS.iter().map(|r| cohort(r, "fiber", "quic-stream")).collect();
    let fake = Fake::new(
        cohorts,
        Box::new(move |c, m, _| {
            let down = m >= outage && c.region != "eu";
            let mut minute = Minute::publishing(3, if down { 3 } else { 0 });
            minute.merge(&Minute::viewing(3, 0.001, 0.0));
            Some(minute)
        }),
    );
    let settings = default_settings();
    let every = settings.evaluate_every_ms;
    let mut run = Run::new(fake, settings);
    run.agents = steady_agents(&[
        ("sea-1", "sea", "fiber"),
        ("latam-1", "latam", "fiber"),
        ("eu-1", "eu", "fiber"),
    ]);
    run.run(start + 23_000, outage + min(15), every);

    // The first outage minute can be judged once it has settled.
    let judged = outage + min(1) + 30_000;
    for region in ["sea", "latam"] {
        let p0 = run.first(Alert::PublishFailures, region, Severity::P0).expect("a P0");
        eprintln!(
            "outage: {region} P0 {} s after the first outage minute settled",
            (p0.at - judged) / 1000
        );
        assert!(
            p0.at <= judged + 2 * every,
            "{region}: P0 {} s after the first outage minute could be judged",
            (p0.at - judged) / 1000
        );
        assert_eq!(p0.transition.change, Change::Opened, "opened at P0 at once: one page");
        assert!(
            p0.incident.evidence[0].text.contains("2 regions"),
            "{}",
            p0.incident.evidence[0].text
        );
    }
    assert!(run.first(Alert::PublishFailures, "eu", Severity::P2).is_none());
}

/// Evening peak: the stall ratio rises 19:00-20:00 UTC to `peak`, holds to 23:00, falls by
/// midnight; 0.1 % otherwise; +-10 % noise.
fn evening(m: u64, peak: f64) -> f64 {
    let base = 0.001;
    let hour = (m % (24 * HOUR_MS)) as f64 / HOUR_MS as f64;
    let clean = match hour {
        h if (19.0..20.0).contains(&h) => base + (peak - base) * (h - 19.0),
        h if (20.0..23.0).contains(&h) => peak,
        h if h >= 23.0 => peak - (peak - base) * (h - 23.0),
        _ => base,
    };
    clean * (1.0 + 0.1 * noise(m / MINUTE_MS * 13))
}

fn evening_run(sea_peak_now: f64) -> Run {
    // Four past weeks with a 0.40 % peak (+-8 % week to week), then this week.
    let today = T0 + 4 * WEEK_MS;
    let weekly = [0.92, 1.04, 1.08, 0.96];
    let cohorts = REGIONS.iter().map(|r| cohort(r, "4g", "quic-stream")).collect();
    let fake = Fake::new(
        cohorts,
        Box::new(move |c, m, _| {
            let week = ((m - T0) / WEEK_MS) as usize;
            let peak = match weekly.get(week) {
                Some(f) => 0.004 * f,
                None if c.region == "sea" => sea_peak_now,
                None => 0.004,
            };
            Some(Minute::viewing(3, evening(m, peak), 0.001))
        }),
    );
    let mut run = Run::new(fake, default_settings());
    run.agents = steady_agents(&[
        ("sea-4g-1", "sea", "4g"),
        ("latam-4g-1", "latam", "4g"),
        ("eu-4g-1", "eu", "4g"),
    ]);
    run.run(today + 16 * HOUR_MS, today + 25 * HOUR_MS, min(1));
    run
}

#[test]
fn an_evening_peak_like_the_previous_weeks_raises_nothing() {
    let run = evening_run(0.004);
    let raised: Vec<_> = run.changes().map(|s| &s.incident.summary).collect();
    assert!(raised.is_empty(), "{raised:#?}");
}

#[test]
fn an_evening_peak_twice_as_bad_as_usual_raises_a_p2_from_the_baseline() {
    let run = evening_run(0.008);
    let p2 = run.first(Alert::Stalls, "sea", Severity::P2).expect("a P2 for sea");
    let today = T0 + 4 * WEEK_MS;
    eprintln!(
        "evening: P2 at {:.2} h with {:?}; firing {:?}",
        (p2.at - today) as f64 / 3.6e6,
        p2.incident.methods,
        run.firing
    );
    assert!(p2.at < today + 22 * HOUR_MS, "P2 only at {} h", (p2.at - today) / HOUR_MS);
    assert_eq!(run.worst(), Some(Severity::P2), "under the SLO: an early warning, not a page");
    assert!(
        run.firing.contains(&(Alert::Stalls, "sea".to_owned(), Method::Baseline)),
        "the baseline rule never fired: {:?}",
        run.firing
    );
    assert!(run.changes().all(|s| s.incident.scope.region == "sea"));
}

#[test]
fn a_single_flapping_agent_does_not_page() {
    let start = T0 + 4 * WEEK_MS + 8 * HOUR_MS;
    // sea-wifi-2 keeps measuring, but reaches the collector for 3 minutes out of 6: its
    // reports of the other 3 arrive late, from its spool, when it is back.
    let phase = |t: u64| ((t - T0) / MINUTE_MS) % 6;
    let present = move |t: u64| phase(t) < 3;
    let reached =
        move |now: u64| if present(now) { now } else { now - (now - T0) % min(6) + min(3) };
    let cohorts = REGIONS.iter().map(|r| cohort(r, "wifi", "quic-stream")).collect();
    let fake = Fake::new(
        cohorts,
        Box::new(move |c, m, now| {
            let mut minute = Minute::viewing(1, 0.001, 0.001);
            if c.region == "sea" && m + min(1) <= reached(now) {
                minute.merge(&Minute::viewing(1, 0.001, 0.001));
            }
            Some(minute)
        }),
    );
    let mut run = Run::new(fake, default_settings());
    run.agents = Box::new(move |now| {
        vec![
            agent("sea-wifi-1", "sea", "wifi", now - 5_000),
            agent(
                "sea-wifi-2",
                "sea",
                "wifi",
                if present(now) { now - 5_000 } else { reached(now) },
            ),
            agent("latam-wifi-1", "latam", "wifi", now - 5_000),
            agent("eu-wifi-1", "eu", "wifi", now - 5_000),
        ]
    });
    run.run(start + 11_000, start + min(120), min(1));

    let summaries: Vec<_> =
        run.changes().map(|s| (s.at, &s.transition, &s.incident.summary)).collect();
    assert!(run.worst() <= Some(Severity::P2), "a flapping agent paged: {summaries:#?}");
    let absences: Vec<_> = run
        .changes()
        .filter(|s| s.incident.alert == Alert::AgentAbsent && s.transition.change == Change::Opened)
        .collect();
    assert_eq!(
        absences.len(),
        1,
        "one incident for the flapping agent, not one per gap: {summaries:#?}"
    );
    assert_eq!(absences[0].incident.scope.agent, "sea-wifi-2");
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    // A pager that takes P1 and up hears nothing at all.
    let pager = hook(Severity::P1);
    assert!(run.evaluator.incidents().all.values().all(|i| due(&pager, i, None).is_none()));
}

#[test]
fn udp_failing_where_quic_works_is_attributed_to_udp() {
    let start = T0 + 4 * WEEK_MS + 5 * HOUR_MS;
    let blocked = start + min(20);
    let cohorts =
        ["quic-stream", "quic-datagram", "udp"].iter().map(|t| cohort("sea", "3g", t)).collect();
    let fake = Fake::new(
        cohorts,
        Box::new(move |c, m, _| {
            let mut minute = Minute::viewing(2, 0.002, 0.002);
            if c.transport == "udp" && m >= blocked {
                minute = Minute::default();
                minute.add("view_attempts", 2).add("view_failures_unreachable", 2);
            }
            Some(minute)
        }),
    );
    let mut run = Run::new(fake, default_settings());
    run.agents = steady_agents(&[("sea-3g-1", "sea", "3g"), ("sea-3g-2", "sea", "3g")]);
    run.run(start + 5_000, blocked + min(15), min(1));
    let udp = run.first(Alert::UdpThrottled, "sea", Severity::P2).expect("UDP attributed");
    assert_eq!(udp.incident.scope.transport, "udp");
    assert!(
        udp.incident.evidence[0].text.contains("UDP is blocked or throttled here"),
        "{}",
        udp.incident.evidence[0].text
    );
    let p1 = run.first(Alert::ViewFailures, "sea", Severity::P1).expect("the UDP cohort's own P1");
    assert_eq!(p1.incident.scope.transport, "udp");
    let evidence = &p1.incident.evidence[0].text;
    assert!(evidence.contains("failures by cause: unreachable 4"), "{evidence}");
    assert!(
        run.changes().all(|s| s.incident.scope.transport == "udp"),
        "QUIC cohorts raised something"
    );
}

/// Jitter is judged on the datagram cohorts: `quic-stream`'s objects wait for QUIC's
/// retransmissions on a lossy path, which is not wire jitter (`Signal::judged_on`).
#[test]
fn quic_stream_retransmission_waits_raise_no_jitter_alert_but_wire_jitter_on_udp_does() {
    let start = T0 + 4 * WEEK_MS + 5 * HOUR_MS;
    let jittery = start + min(20);
    let cohorts = ["quic-stream", "udp"].iter().map(|t| cohort("latam", "wifi", t)).collect();
    let fake = Fake::new(
        cohorts,
        Box::new(move |c, m, _| {
            let mut minute = Minute::viewing(2, 0.0, 0.002);
            // quic-stream: 60 ms p95 throughout (retransmission waits); udp: 5 ms, then 60 ms
            // of wire jitter from `jittery` on.
            let high = c.transport == "quic-stream" || m >= jittery;
            let p95_us = if high { 60_000 } else { 5_000 };
            minute.jitter_us =
                (0..1_000u64).map(|i| if i < 900 { 3_000 } else { p95_us }).collect();
            Some(minute)
        }),
    );
    let mut run = Run::new(fake, default_settings());
    run.agents = steady_agents(&[("latam-wifi-1", "latam", "wifi")]);
    run.run(start + 5_000, jittery + min(10), min(1));
    let jitter: Vec<_> = run.changes().filter(|s| s.incident.alert == Alert::Jitter).collect();
    assert!(!jitter.is_empty(), "udp's wire jitter raised nothing");
    for s in &jitter {
        assert_eq!(s.incident.scope.transport, "udp", "quic-stream judged on jitter");
        assert!(s.at >= jittery, "udp raised jitter before it had any");
    }
}

#[test]
fn every_relay_of_a_region_unreachable_is_a_p0() {
    let start = T0 + 4 * WEEK_MS + 5 * HOUR_MS;
    let down = start + min(10);
    let cohorts = vec![cohort("sea", "4g", "quic-stream"), cohort("sea", "wifi", "quic-stream")];
    let fake = Fake::new(
        cohorts,
        Box::new(move |_, m, _| {
            let mut minute = Minute::default();
            let failed = if m >= down { 3 } else { 0 };
            minute.add("view_attempts", 3).add("view_failures_unreachable", failed);
            Some(minute)
        }),
    );
    let mut config = AlertsConfig::default();
    config.impact.p0_min_agent_share = 1.0;
    let relays = [Relay {
        name: "relay-sea".into(),
        address: "relay:4433".into(),
        region: Some("sea".into()),
    }];
    let settings = config.settings(&Slo::default(), &relays);
    let mut run = Run::new(fake, settings);
    // Other regions' agents are fine, so the share rule alone would not make this a P0.
    run.agents = steady_agents(&[
        ("sea-1", "sea", "4g"),
        ("eu-1", "eu", "4g"),
        ("eu-2", "eu", "4g"),
        ("us-1", "us", "4g"),
    ]);
    run.run(start + 1_000, down + min(8), min(1));
    let p0 = run.first(Alert::ViewFailures, "sea", Severity::P0).expect("a P0");
    assert!(
        p0.incident.evidence[0].text.contains("every relay of region sea"),
        "{}",
        p0.incident.evidence[0].text
    );
}

#[test]
fn a_slow_burn_under_the_threshold_pages_by_burn_rate() {
    let start = T0 + 4 * WEEK_MS;
    let burn = start + 2 * HOUR_MS;
    // 8 % of views fail: under the 10 % threshold, 8x a 1 % budget.
    let fake = Fake::new(
        vec![cohort("sea", "4g", "quic-stream")],
        Box::new(move |_, m, _| {
            let mut minute = Minute::default();
            let failed = u64::from(m >= burn && (m / MINUTE_MS) % 25 < 2);
            minute.add("view_attempts", 1).add("view_failures_unreachable", failed);
            Some(minute)
        }),
    );
    let mut run = Run::new(fake, default_settings());
    run.agents = steady_agents(&[("sea-1", "sea", "4g")]);
    run.run(start + 1_000, burn + 7 * HOUR_MS, min(5));
    let p1 = run.first(Alert::ViewFailures, "sea", Severity::P1).expect("a burn-rate P1");
    assert!(p1.incident.methods.contains(&Method::BurnRate), "{:?}", p1.incident.methods);
    assert!(!p1.incident.methods.contains(&Method::Threshold), "{:?}", p1.incident.methods);
    assert_eq!(run.worst(), Some(Severity::P1));
    assert!(p1.incident.evidence[0].text.contains("6h"), "{}", p1.incident.evidence[0].text);
    // The 6h window must mostly hold the burn: 8 % over 6 h reaches 6x after 4.5 h.
    assert!(p1.at >= burn + 4 * HOUR_MS, "fired after {} min", (p1.at - burn) / MINUTE_MS);
}

#[test]
fn too_little_viewing_is_insufficient_data_not_an_alert() {
    let start = T0 + 4 * WEEK_MS;
    // 5 s of viewing a minute, half of it stalled: far too little to judge.
    let fake = Fake::new(
        vec![cohort("sea", "2g", "udp")],
        Box::new(|_, _, _| {
            let mut minute = Minute::default();
            minute.add("play_time_ns", 2_500_000_000).add("stall_time_ns", 2_500_000_000);
            Some(minute)
        }),
    );
    let mut run = Run::new(fake, default_settings());
    run.agents = steady_agents(&[("sea-2g-1", "sea", "2g")]);
    run.run(start, start + min(30), min(1));
    assert!(run.changes().next().is_none(), "{:?}", run.changes().next());
    let insufficient = run.evaluator.insufficient();
    assert_eq!(insufficient.get(&cohort("sea", "2g", "udp")), Some(&vec![Signal::StallRatio]));
}

#[test]
fn a_restart_with_an_open_p1_neither_forgets_it_nor_notifies_again() {
    let start = T0 + 4 * WEEK_MS + 10 * HOUR_MS;
    let ramp = start + min(60);
    let make = || {
        let cohorts = REGIONS.iter().map(|r| cohort(r, "4g", "quic-stream")).collect();
        Fake::new(
            cohorts,
            Box::new(move |c, m, _| {
                Some(Minute::viewing(3, ramp_ratio(&c.region, m, ramp), 0.001))
            }),
        )
    };
    let agents = || steady_agents(&[("sea-4g-1", "sea", "4g")]);
    let mut before = Run::new(make(), default_settings());
    before.agents = agents();
    let crash = ramp + min(50);
    before.run(start, crash, min(1));
    let p1 = before
        .first(Alert::Stalls, "sea", Severity::P1)
        .expect("a P1 before the restart")
        .incident
        .clone();
    // The chat receiver heard the P1.
    let pager = hook(Severity::P2);
    let open = before.evaluator.incidents().all[&p1.id].clone();
    let heard = Notified { severity: open.severity, status: Status::Open, dropped: false };
    assert!(due(&pager, &open, Some(&heard)).is_none());

    // Save the state as the service does, and start a new evaluator from the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts-state.json");
    let mut state = crate::alerts::state::State {
        version: crate::alerts::state::STATE_VERSION,
        incidents: before.evaluator.incidents().clone(),
        ..Default::default()
    };
    state.notified.entry(pager.name.clone()).or_default().insert(p1.id, heard);
    crate::alerts::state::save(&path, &state).unwrap();
    let (restored, problem) = crate::alerts::state::load(&path);
    drop(dir);
    assert!(problem.is_none());

    let mut after = Run::new(make(), default_settings());
    after.evaluator =
        Evaluator::new(default_settings(), after.fake.downsample_after, restored.incidents);
    after.agents = agents();
    // Back two minutes later, and on for ten.
    after.run(crash + min(2), crash + min(12), min(1));
    let still = after.evaluator.incidents().all[&p1.id].clone();
    assert!(still.is_open(), "the open P1 was forgotten");
    assert_eq!((still.opened_unix_ms, still.severity), (p1.opened_unix_ms, Severity::P1));
    let changes: Vec<_> = after.changes().collect();
    assert!(changes.is_empty(), "the restart changed incidents: {changes:#?}");
    let heard = restored.notified[&pager.name].get(&p1.id);
    assert!(due(&pager, &still, heard).is_none(), "the receiver would be notified again");
}

/// Three regions on 4g, a few first frames a minute each, all fast but for `slow_in_sea` slow
/// ones in sea (one per minute from minute 3); the peer-outlier rule over its 15 minutes.
fn first_frame_outliers(slow_in_sea: u64) -> Run {
    let start = T0 + 4 * WEEK_MS + 3 * HOUR_MS;
    let cohorts = REGIONS.iter().map(|r| cohort(r, "4g", "quic-datagram")).collect();
    let fake = Fake::new(
        cohorts,
        Box::new(move |c, m, _| {
            let mut minute = Minute::viewing(1, 0.0, 0.0);
            minute.first_frame_us = vec![200_000];
            let n = m.checked_sub(start).map(|d| d / MINUTE_MS);
            if c.region == "sea" && n.is_some_and(|n| (3..3 + slow_in_sea).contains(&n)) {
                minute.first_frame_us.push(3_000_000);
            }
            Some(minute)
        }),
    );
    let mut run = Run::new(fake, default_settings());
    run.agents = steady_agents(&[
        ("sea-4g-1", "sea", "4g"),
        ("latam-4g-1", "latam", "4g"),
        ("eu-4g-1", "eu", "4g"),
    ]);
    run.run(start + 17_000, start + min(12), min(1));
    run
}

#[test]
fn one_slow_first_frame_does_not_make_a_region_a_peer_outlier_but_two_do() {
    // Every (alert, region) the peer-outlier rule fired for at some tick (it may join an
    // incident another rule opened, so look at the methods firing, not at the openings).
    let outliers = |run: &Run| -> Vec<(Alert, String)> {
        run.firing
            .iter()
            .filter(|(_, _, method)| *method == Method::PeerOutlier)
            .map(|(alert, region, _)| (*alert, region.clone()))
            .collect()
    };
    let one = outliers(&first_frame_outliers(1));
    assert!(one.is_empty(), "one slow first frame made a region an outlier: {one:?}");
    // The control: two slow first frames in the window (about 2 of 20) single sea out.
    let two = outliers(&first_frame_outliers(2));
    assert_eq!(two, [(Alert::FirstFrameSlow, "sea".to_owned())]);
}
