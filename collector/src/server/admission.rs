//! Who may send a report now: at most one report in flight per agent, and a per-agent rate
//! (a token bucket), so one agent cannot take the decoders or the writer's queue from the
//! rest of the fleet. Sans-IO: every call takes `now`.
//!
//! Agents send their reports one at a time, oldest first, and far below the rate, even when
//! they drain a day of spool after an outage; only a misbehaving agent meets either limit.
//! Both answers are "retry later" (429 with `Retry-After`), so nothing is lost.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Reports one agent may send per second, on average.
pub const REPORTS_PER_SECOND: f64 = 20.0;
/// Reports one agent may send at once after a quiet spell (a spool drain starts with them).
pub const REPORT_BURST: f64 = 200.0;
/// Agents tracked beyond which idle ones (nothing in flight, a full bucket) are forgotten.
const PRUNE_ABOVE: usize = 4096;

/// Why a report may not go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The agent has another report in flight.
    Busy,
    /// The agent is over its rate; a token is back after this long.
    Rate(Duration),
}

#[derive(Debug)]
struct AgentState {
    in_flight: bool,
    tokens: f64,
    updated: Instant,
}

/// The per-agent gate ingest passes every report through.
#[derive(Debug)]
pub struct Admission {
    agents: Mutex<HashMap<String, AgentState>>,
    per_second: f64,
    burst: f64,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(REPORTS_PER_SECOND, REPORT_BURST)
    }
}

impl Admission {
    /// A gate allowing `per_second` reports per agent on average and `burst` at once.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Admission { agents: Mutex::new(HashMap::new()), per_second, burst }
    }

    /// Lets one report of `agent` in, or says why not. The report is in flight until the
    /// returned [`Turn`] is dropped.
    pub fn admit(&self, agent: &str, now: Instant) -> Result<Turn<'_>, Refusal> {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        if agents.len() > PRUNE_ABOVE {
            let burst = self.burst;
            let per_second = self.per_second;
            agents.retain(|_, s| s.in_flight || refilled(s, now, per_second, burst) < burst);
        }
        let state = agents.entry(agent.to_owned()).or_insert(AgentState {
            in_flight: false,
            tokens: self.burst,
            updated: now,
        });
        if state.in_flight {
            return Err(Refusal::Busy);
        }
        state.tokens = refilled(state, now, self.per_second, self.burst);
        state.updated = now;
        if state.tokens < 1.0 {
            let wait = (1.0 - state.tokens) / self.per_second;
            return Err(Refusal::Rate(Duration::from_secs_f64(wait)));
        }
        state.tokens -= 1.0;
        state.in_flight = true;
        Ok(Turn { admission: self, agent: agent.to_owned() })
    }

    fn release(&self, agent: &str) {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = agents.get_mut(agent) {
            state.in_flight = false;
        }
    }
}

fn refilled(state: &AgentState, now: Instant, per_second: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
    (state.tokens + elapsed * per_second).min(burst)
}

/// One admitted report; dropping it (answered, refused or cancelled) ends it.
#[derive(Debug)]
pub struct Turn<'a> {
    admission: &'a Admission,
    agent: String,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.admission.release(&self.agent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_in_flight_per_agent() {
        let gate = Admission::new(10.0, 10.0);
        let t0 = crate::clock::monotonic();
        let first = gate.admit("a", t0).unwrap();
        assert_eq!(gate.admit("a", t0).unwrap_err(), Refusal::Busy);
        // Another agent is not held up.
        let other = gate.admit("b", t0).unwrap();
        drop(first);
        assert!(gate.admit("a", t0).is_ok());
        drop(other);
    }

    #[test]
    fn rate_refills_over_time() {
        let gate = Admission::new(2.0, 3.0);
        let t0 = crate::clock::monotonic();
        for _ in 0..3 {
            gate.admit("a", t0).unwrap();
        }
        let Err(Refusal::Rate(wait)) = gate.admit("a", t0) else { panic!("over the burst") };
        assert_eq!(wait, Duration::from_millis(500));
        let Err(Refusal::Rate(wait)) = gate.admit("a", t0 + Duration::from_millis(490)) else {
            panic!("a token is not back yet")
        };
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(10), "{wait:?}");
        assert!(gate.admit("a", t0 + Duration::from_millis(1000)).is_ok());
        // A long quiet spell refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            gate.admit("a", later).unwrap();
        }
        assert!(gate.admit("a", later).is_err());
    }
}
