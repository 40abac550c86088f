//! Per-source-address caps: the sessions (QUIC connections and verified UDP peers) and the
//! published streams one IP address may hold at once, so one host cannot take a relay's whole
//! stream or peer budget. A hold is a guard: dropping it gives the slot back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// What a hold counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A QUIC connection or a verified UDP peer.
    Session,
    /// A published stream.
    Stream,
}

#[derive(Debug, Default)]
struct Count {
    sessions: usize,
    streams: usize,
}

impl Count {
    fn of(&mut self, kind: Kind) -> &mut usize {
        match kind {
            Kind::Session => &mut self.sessions,
            Kind::Stream => &mut self.streams,
        }
    }
}

/// The holds of every source address.
#[derive(Debug)]
pub(crate) struct SourceCaps {
    max_sessions: usize,
    max_streams: usize,
    counts: Mutex<HashMap<IpAddr, Count>>,
}

impl SourceCaps {
    pub(crate) fn new(max_sessions: usize, max_streams: usize) -> SourceCaps {
        SourceCaps { max_sessions, max_streams, counts: Mutex::new(HashMap::new()) }
    }

    /// The cap of `kind`.
    pub(crate) fn max(&self, kind: Kind) -> usize {
        match kind {
            Kind::Session => self.max_sessions,
            Kind::Stream => self.max_streams,
        }
    }

    /// A slot of `kind` for `ip`, or `None` if it holds its cap already.
    pub(crate) fn try_hold(self: &Arc<Self>, ip: IpAddr, kind: Kind) -> Option<SourceGuard> {
        // An IPv4 client reaching a dual-stack socket is the same host as over IPv4.
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let held = counts.entry(ip).or_default().of(kind);
        if *held >= self.max(kind) {
            return None;
        }
        *held += 1;
        Some(SourceGuard { caps: self.clone(), ip, kind })
    }

    /// Slots of `kind` `ip` holds now.
    #[cfg(test)]
    fn held(&self, ip: IpAddr, kind: Kind) -> usize {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get_mut(&ip.to_canonical()).map_or(0, |c| *c.of(kind))
    }
}

/// One slot held; given back on drop.
#[derive(Debug)]
pub(crate) struct SourceGuard {
    caps: Arc<SourceCaps>,
    ip: IpAddr,
    kind: Kind,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut counts = self.caps.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            let held = count.of(self.kind);
            *held = held.saturating_sub(1);
            if count.sessions == 0 && count.streams == 0 {
                // No entry left behind per address ever seen.
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_caps_and_drops_give_slots_back() {
        let caps = Arc::new(SourceCaps::new(2, 1));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = caps.try_hold(a, Kind::Session).unwrap();
        let _s2 = caps.try_hold(a, Kind::Session).unwrap();
        assert!(caps.try_hold(a, Kind::Session).is_none());
        // The same host over a dual-stack socket counts as itself.
        assert!(caps.try_hold("::ffff:192.0.2.1".parse().unwrap(), Kind::Session).is_none());
        // Streams and other addresses have their own slots.
        let stream = caps.try_hold(a, Kind::Stream).unwrap();
        assert!(caps.try_hold(a, Kind::Stream).is_none());
        let _other = caps.try_hold(b, Kind::Session).unwrap();
        drop(s1);
        assert_eq!(caps.held(a, Kind::Session), 1);
        assert!(caps.try_hold(a, Kind::Session).is_some());
        drop(stream);
        assert_eq!(caps.held(a, Kind::Stream), 0);
    }

    #[test]
    fn an_address_with_nothing_held_leaves_no_entry() {
        let caps = Arc::new(SourceCaps::new(1, 1));
        for i in 0..100u8 {
            drop(caps.try_hold(IpAddr::from([10, 0, 0, i]), Kind::Session));
        }
        assert!(caps.counts.lock().unwrap().is_empty());
    }
}
