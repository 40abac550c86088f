//! Carries the agent's own lateness to the self-noise guard (`stallwatch_measure::noise`).
//!
//! The publisher's pacing thread and the emulator's delivery threads note how late they ran;
//! each in-process viewer reads the largest value noted since its last window and hands it to
//! its receiver when it takes the window. One [`Lateness`] per source, one [`LatenessReader`]
//! per viewer, so that two viewers of one publisher each see every late send. A viewer of a
//! stream published elsewhere (`probe --view`) has no sender reader: there is nothing to note.
//!
//! A lateness is attributed to the window in which the viewer takes it, not the one in which
//! the late packet arrives; the two differ only for packets in flight across a window's end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use stallwatch_measure::Receiver;

/// Where one source (a pacer, an emulator) notes how late it ran.
#[derive(Debug, Default)]
pub struct Lateness {
    /// One cell per reader, holding the largest lateness (ns) since that reader last took it.
    readers: Mutex<Vec<Arc<AtomicU64>>>,
}

impl Lateness {
    /// A source with no readers yet.
    pub fn new() -> Arc<Lateness> {
        Arc::default()
    }

    /// Notes that the source ran `late` (kept if it is the largest since each reader's last take).
    pub fn note(&self, late: Duration) {
        let nanos = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return;
        }
        let readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        for cell in readers.iter() {
            cell.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// A reader that sees everything noted from now on. Readers live as long as their source
    /// (a publisher or an emulator of one attempt), so the list stays as short as its viewers.
    pub fn reader(&self) -> LatenessReader {
        let cell = Arc::new(AtomicU64::new(0));
        self.readers.lock().unwrap_or_else(PoisonError::into_inner).push(cell.clone());
        LatenessReader(cell)
    }
}

/// One viewer's view of a [`Lateness`].
#[derive(Debug, Clone)]
pub struct LatenessReader(Arc<AtomicU64>);

impl LatenessReader {
    /// The largest lateness noted since the last take (zero if none), and starts over.
    pub fn take(&self) -> Duration {
        Duration::from_nanos(self.0.swap(0, Ordering::Relaxed))
    }
}

/// What a viewer reads its self-noise from: the in-process publisher's send timer and the
/// emulator in front of the relay, when there are such.
#[derive(Debug, Clone, Default)]
pub struct SelfNoiseFeed {
    pub sender: Option<LatenessReader>,
    pub emulator: Option<LatenessReader>,
}

impl SelfNoiseFeed {
    /// Hands what was noted since the last call to `receiver`; call it just before taking a
    /// window, so the window's self-noise mark covers it.
    pub fn note_into(&self, receiver: &mut Receiver) {
        if let Some(sender) = &self.sender {
            receiver.note_sender_lateness(sender.take());
        }
        if let Some(emulator) = &self.emulator {
            receiver.note_emulator_lateness(emulator.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_reader_sees_the_largest_since_its_own_last_take() {
        let source = Lateness::new();
        source.note(ms(50)); // before any reader: seen by none
        let (a, b) = (source.reader(), source.reader());
        source.note(ms(3));
        source.note(ms(7));
        source.note(ms(2));
        assert_eq!(a.take(), ms(7));
        assert_eq!(a.take(), Duration::ZERO);
        source.note(ms(1));
        assert_eq!(a.take(), ms(1));
        assert_eq!(b.take(), ms(7));
    }
}
