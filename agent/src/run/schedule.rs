//! When probe attempts and reports happen, and what a new plan changes. Pure: every function
//! takes the time as an argument (Unix nanoseconds or milliseconds).

use std::collections::BTreeMap;
use std::time::Duration;

use stallwatch_proto::plan::{Plan, ProbePlan, RelayPlan};

/// The first attempt start at or after `now_ns`: the smallest `t >= now_ns` with
/// `(t - start_offset) mod every == 0`, counted from the Unix epoch. Every agent computes the
/// same grid, so the collector staggers agents by giving each its own `start_offset`.
/// A zero `every` is treated as 1 ns (plans validate `every >= duration > 0`).
pub fn next_start(now_ns: u64, every: Duration, start_offset: Duration) -> u64 {
    let every = (every.as_nanos() as u64).max(1);
    let offset = start_offset.as_nanos() as u64 % every;
    // Shift so that the grid is at multiples of `every`, round up, shift back.
    let shifted = now_ns.saturating_sub(offset);
    if now_ns < offset {
        return offset;
    }
    let rounded = shifted.div_ceil(every).saturating_mul(every);
    rounded.saturating_add(offset)
}

/// The next report tick strictly after `now_ms`, on the wall-clock grid of `interval`
/// (10 s: at :00, :10, :20 ...).
pub fn next_report_tick(now_ms: u64, interval: Duration) -> u64 {
    let every = (interval.as_millis() as u64).max(1);
    (now_ms / every + 1).saturating_mul(every)
}

/// What applying a new plan does to the running probes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanDiff {
    /// Probes whose plan is unchanged: they keep running untouched.
    pub keep: Vec<String>,
    /// Probes removed or changed: cancel them.
    pub stop: Vec<String>,
    /// Probes new or changed: start them on their schedule.
    pub start: Vec<ProbePlan>,
    /// What happens to the in-process relay.
    pub relay: RelayChange,
}

/// What happens to the in-process relay on a plan change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RelayChange {
    /// Nothing (unchanged, or none before and none now).
    #[default]
    Keep,
    /// Start one.
    Start(RelayPlan),
    /// Stop the running one.
    Stop,
    /// Stop the running one and start this one.
    Restart(RelayPlan),
}

/// Compares the running probes (by name) with a new plan.
pub fn diff_plans(
    running: &BTreeMap<String, ProbePlan>,
    old_relay: Option<&RelayPlan>,
    new: &Plan,
) -> PlanDiff {
    let mut diff = PlanDiff::default();
    let new_by_name: BTreeMap<&str, &ProbePlan> =
        new.probes.iter().map(|p| (p.name.as_str(), p)).collect();
    for (name, plan) in running {
        match new_by_name.get(name.as_str()) {
            Some(p) if *p == plan => diff.keep.push(name.clone()),
            _ => diff.stop.push(name.clone()),
        }
    }
    for p in &new.probes {
        if running.get(&p.name) != Some(p) {
            diff.start.push(p.clone());
        }
    }
    diff.relay = match (old_relay, &new.relay) {
        (None, None) => RelayChange::Keep,
        // A new revocation list reaches the running relay without a restart (`Runner::apply`).
        (Some(a), Some(b)) if same_relay(a, b) => RelayChange::Keep,
        (None, Some(b)) => RelayChange::Start(b.clone()),
        (Some(_), None) => RelayChange::Stop,
        (Some(_), Some(b)) => RelayChange::Restart(b.clone()),
    };
    diff
}

/// Whether two relay plans run the same relay (all but the revocation list equal).
fn same_relay(a: &RelayPlan, b: &RelayPlan) -> bool {
    let RelayPlan { listen, gop_cache, udp_credential, revoked_serials: _ } = a;
    *listen == b.listen && *gop_cache == b.gop_cache && *udp_credential == b.udp_credential
}

#[cfg(test)]
mod tests {
    use stallwatch_proto::plan::{ProbeMode, Transport};

    use super::*;

    const S: u64 = 1_000_000_000;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn starts_are_aligned_to_the_epoch_grid_plus_offset() {
        // every 60 s, offset 15 s: ..., 15, 75, 135, ...
        assert_eq!(next_start(0, secs(60), secs(15)), 15 * S);
        assert_eq!(next_start(15 * S, secs(60), secs(15)), 15 * S);
        assert_eq!(next_start(15 * S + 1, secs(60), secs(15)), 75 * S);
        assert_eq!(next_start(74 * S, secs(60), secs(15)), 75 * S);
        assert_eq!(next_start(1_700_000_000 * S, secs(60), secs(0)), 1_700_000_040 * S);
        let t = next_start(1_700_000_001 * S + 7, secs(300), secs(42));
        assert_eq!((t / S - 42) % 300, 0);
        assert!((1_700_000_001 * S + 7..1_700_000_001 * S + 7 + 300 * S).contains(&t));
        // Two agents with the same period and different offsets never start together.
        let a = next_start(1_700_000_000 * S, secs(30), secs(0));
        let b = next_start(1_700_000_000 * S, secs(30), secs(10));
        assert_eq!(b - a, 10 * S);
    }

    #[test]
    fn sub_second_periods_and_odd_offsets_work() {
        let every = Duration::from_millis(1500);
        let t = next_start(10 * S, every, Duration::from_millis(250));
        assert_eq!(t, 10_750_000_000);
        assert_eq!(next_start(5, Duration::ZERO, Duration::ZERO), 5);
    }

    #[test]
    fn report_ticks_are_on_the_wall_clock_grid() {
        assert_eq!(next_report_tick(0, secs(10)), 10_000);
        assert_eq!(next_report_tick(9_999, secs(10)), 10_000);
        assert_eq!(next_report_tick(10_000, secs(10)), 20_000);
        assert_eq!(next_report_tick(1_700_000_003_500, secs(10)), 1_700_000_010_000);
    }

    fn probe(name: &str) -> ProbePlan {
        ProbePlan {
            name: name.into(),
            target: "fra".into(),
            address: "127.0.0.1:4433".into(),
            transport: Transport::Udp,
            profile: "360p15".into(),
            mode: ProbeMode::Loopback,
            every: secs(60),
            duration: secs(20),
            start_offset: secs(5),
            emulate: None,
            repair: None,
            udp_credential: None,
        }
    }

    #[test]
    fn a_new_plan_keeps_unchanged_probes_and_restarts_changed_ones() {
        let running: BTreeMap<String, ProbePlan> =
            ["same", "changed", "removed"].iter().map(|n| (n.to_string(), probe(n))).collect();
        let relay = RelayPlan {
            listen: "0.0.0.0:4433".into(),
            gop_cache: true,
            udp_credential: None,
            revoked_serials: Vec::new(),
        };
        let plan = Plan {
            revision: 2,
            report_interval: secs(10),
            relay: Some(relay.clone()),
            probes: vec![
                probe("same"),
                ProbePlan { start_offset: secs(6), ..probe("changed") },
                probe("new"),
            ],
        };
        let d = diff_plans(&running, Some(&relay), &plan);
        assert_eq!(d.keep, vec!["same".to_string()]);
        assert_eq!(d.stop, vec!["changed".to_string(), "removed".to_string()]);
        let started: Vec<&str> = d.start.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(started, vec!["changed", "new"]);
        assert_eq!(d.relay, RelayChange::Keep);
    }

    #[test]
    fn relay_changes_start_stop_and_restart_it() {
        let a = RelayPlan {
            listen: "0.0.0.0:4433".into(),
            gop_cache: true,
            udp_credential: None,
            revoked_serials: Vec::new(),
        };
        let b = RelayPlan { gop_cache: false, ..a.clone() };
        let plan = |relay: Option<RelayPlan>| Plan {
            revision: 1,
            report_interval: secs(10),
            relay,
            probes: vec![],
        };
        let none = BTreeMap::new();
        assert_eq!(
            diff_plans(&none, None, &plan(Some(a.clone()))).relay,
            RelayChange::Start(a.clone())
        );
        assert_eq!(diff_plans(&none, Some(&a), &plan(None)).relay, RelayChange::Stop);
        assert_eq!(
            diff_plans(&none, Some(&a), &plan(Some(b.clone()))).relay,
            RelayChange::Restart(b)
        );
        assert_eq!(diff_plans(&none, Some(&a), &plan(Some(a.clone()))).relay, RelayChange::Keep);
        assert_eq!(diff_plans(&none, None, &plan(None)).relay, RelayChange::Keep);
        // A new revocation list does not restart the relay (its streams go on).
        let revoked = RelayPlan { revoked_serials: vec!["1f".into()], ..a.clone() };
        assert_eq!(diff_plans(&none, Some(&a), &plan(Some(revoked))).relay, RelayChange::Keep);
    }
}
