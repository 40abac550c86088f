//! The proxy: a listening socket, NAT-like sessions, and per direction one [`Link`] and one
//! delivery thread.
//!
//! # Data path
//!
//! A datagram from a client (up) or from `to` (down) is offered to its direction's link at once,
//! under that direction's lock, with the link time read under the same lock (so the link sees
//! time go forwards). A dropped datagram is counted there and then; a delivered one goes into
//! the direction's queue, a binary heap ordered by (delivery time, arrival sequence), so equal
//! times leave in arrival order. Per direction, one delivery thread waits for the earliest
//! delivery time and sends every datagram that is due, in order: up through the client's
//! session socket, down from the listening socket to the client. Receiving stays on tokio.
//!
//! # Accuracy
//!
//! A datagram never leaves before the link's delivery time, and leaves 0.1-0.25 ms after it on
//! an idle machine (measured 120-210 µs on the 2-core development VM; more under CPU load). The
//! delivery loop is an OS thread waiting on a condition variable with a timeout (see
//! `deliver`), for the reason the publisher's pacer is one: tokio's timer wheel ticks in whole
//! milliseconds and its driver parks in whole milliseconds, which measured 1.3-1.9 ms late per
//! direction here. Sending up to 500 µs early would halve tokio's error but break the
//! promise that a 50 ms link never shows less than 50 ms. Lateness does not accumulate: every
//! deadline is absolute, and a batch that wakes late goes out together, in order. How late
//! each datagram left is noted in [`ImpairProxy::lateness`]: beyond 10 ms an in-process viewer's
//! window is marked self-noise (docs/metrics.md section 18.8).
//!
//! # Memory
//!
//! Held datagrams cost their length plus [`ENTRY_OVERHEAD`] bytes; each direction holds at most
//! 64 MiB (`Limits::max_queued_bytes`) and drops what would exceed that *before* the link sees
//! it ([`DirectionStats::overflow_dropped`], not a link drop). Sessions are capped
//! (`Limits::max_sessions`) and idle ones removed; an idle session holds a socket and a small
//! task, no receive buffer (sessions read into their worker thread's buffer).
//!
//! # Errors
//!
//! Sending and receiving errors are counted ([`DirectionStats::forward_errors`]) and logged at
//! debug; they end neither the session nor the proxy. An ICMP port unreachable for an up
//! datagram surfaces as `ECONNREFUSED` on the session's next send *or* receive; either way it is
//! counted as an up forwarding error.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{self, AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use stallwatch_measure::Time;
use stallwatch_measure::link::{Fate, Link, LinkConfig, LinkStats};
use stallwatch_proto::media::MEDIA_VERSION;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Direction, direction_seed};
use crate::clock::Clock;
use crate::lateness::Lateness;

/// The largest UDP payload, plus one.
const MAX_DATAGRAM: usize = 65_536;

/// Bytes charged per held datagram on top of its length, for the queue entry and allocation,
/// so that a flood of tiny datagrams is bounded too.
pub const ENTRY_OVERHEAD: usize = 128;

/// How long a receive loop backs off after an unexpected socket error, so a persistent error
/// does not spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// How long a delivery thread waits between tries while a socket's send buffer is full, and
/// for how long in all before it counts the datagram as a forwarding error.
const SEND_BLOCKED_RETRY: Duration = Duration::from_micros(100);
const SEND_BLOCKED_LIMIT: Duration = Duration::from_secs(1);

/// At most one "session table full" warning per this long.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// What to proxy and how to impair it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpairConfig {
    /// Address to listen on (port 0 picks one; see [`ImpairProxy::local_addr`]).
    pub listen: SocketAddr,
    /// Where client datagrams are forwarded to.
    pub to: SocketAddr,
    /// Impairment of client -> `to`.
    pub up: LinkConfig,
    /// Impairment of `to` -> client.
    pub down: LinkConfig,
    /// Seed of the random choices; each direction derives its own ([`direction_seed`]).
    pub seed: u64,
}

/// Resource limits of a proxy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A session with no datagram either way for this long is removed.
    pub idle_timeout: Duration,
    /// Most sessions open at once; datagrams from further clients are dropped.
    pub max_sessions: usize,
    /// Most bytes (with [`ENTRY_OVERHEAD`]) held per direction.
    pub max_queued_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_timeout: Duration::from_secs(60),
            max_sessions: 1024,
            max_queued_bytes: 64 << 20,
        }
    }
}

/// A running impairment proxy: tokio tasks that receive, and two OS threads (one per
/// direction) that deliver. Dropping it stops them (held datagrams are discarded);
/// [`ImpairProxy::shutdown`] does the same, waits for them, and returns the final counts.
#[derive(Debug)]
pub struct ImpairProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// A snapshot of a proxy's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Client -> `to`.
    pub up: DirectionStats,
    /// `to` -> client.
    pub down: DirectionStats,
    /// Sessions open now.
    pub sessions: u64,
    /// Sessions opened since the start.
    pub sessions_opened: u64,
    /// Datagrams from new clients dropped because the session table was full or no upstream
    /// socket could be opened (not offered to any link).
    pub sessions_refused: u64,
}

/// Counters of one direction.
///
/// `received == link.packets + overflow_dropped`. A datagram the link delivered is `queued`
/// until its time, then `forwarded` or, if sending fails, counted in `forward_errors` (which
/// also counts errors reported later about datagrams already forwarded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// What the link model did with the datagrams offered to it. Drops are counted the moment
    /// the model decides them.
    pub link: LinkStats,
    /// Datagrams received from this direction's sender(s).
    pub received: u64,
    /// Datagrams dropped before the link because the direction's queue held its byte limit
    /// (not link drops).
    pub overflow_dropped: u64,
    /// Received stallwatch plain-UDP media datagrams (first byte 1, the media header version).
    pub media_packets: u64,
    /// Media datagrams dropped by the link (any reason) or by overflow: exactly the media loss
    /// the proxy caused.
    pub media_dropped: u64,
    /// Datagrams the link delivered and the operating system accepted for sending.
    pub forwarded: u64,
    /// Sends that failed, plus errors reported afterwards (ECONNREFUSED after an ICMP port
    /// unreachable, on the session's next receive).
    pub forward_errors: u64,
    /// Datagrams held now, waiting for their delivery time.
    pub queued: u64,
    /// Bytes held now, [`ENTRY_OVERHEAD`] included.
    pub queued_bytes: u64,
}

impl fmt::Display for DirectionStats {
    /// One line: `2000 received, 1800 delivered, 200 dropped (random 200, ...), ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.link;
        write!(
            f,
            "{} received, {} delivered, {} dropped (random {}, burst {}, queue_full {}, \
             outage {}), {} overflow, {} forwarded, {} forward errors, {} reordered, \
             {} media ({} dropped)",
            self.received,
            l.delivered,
            l.dropped(),
            l.dropped_random,
            l.dropped_burst,
            l.dropped_queue,
            l.dropped_outage,
            self.overflow_dropped,
            self.forwarded,
            self.forward_errors,
            l.reordered,
            self.media_packets,
            self.media_dropped,
        )?;
        if self.queued > 0 {
            write!(f, ", {} still queued", self.queued)?;
        }
        Ok(())
    }
}

impl ImpairProxy {
    /// Binds `config.listen` and starts forwarding. The links' time origin is now.
    pub async fn start(config: ImpairConfig) -> Result<ImpairProxy> {
        Self::start_with(config, Limits::default()).await
    }

    pub(crate) async fn start_with(config: ImpairConfig, limits: Limits) -> Result<ImpairProxy> {
        let listen = UdpSocket::bind(config.listen)
            .await
            .with_context(|| format!("binding the impairment proxy to {}", config.listen))?;
        let local_addr = listen.local_addr().context("reading the proxy's local address")?;
        let clock = Clock::global();
        let shared = Arc::new(Shared {
            clock,
            start: clock.now(),
            to: config.to,
            listen: Arc::new(listen),
            limits,
            up: Pipe::new(Link::new(config.up, direction_seed(config.seed, Direction::Up))),
            down: Pipe::new(Link::new(config.down, direction_seed(config.seed, Direction::Down))),
            sessions: Mutex::new(Sessions::default()),
            lateness: Lateness::new(),
        });
        let mut threads = Vec::with_capacity(2);
        for direction in [Direction::Up, Direction::Down] {
            let for_thread = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("impair-{direction}"))
                .spawn(move || deliver(&for_thread, direction));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    shared.stop_delivery();
                    return Err(e).context("starting the impairment proxy's delivery thread");
                }
            }
        }
        let tasks = vec![
            tokio::spawn(receive_from_clients(shared.clone())),
            tokio::spawn(remove_idle_sessions(shared.clone())),
        ];
        debug!(listen = %local_addr, to = %config.to, "impairment proxy started");
        Ok(ImpairProxy { shared, local_addr, tasks, threads })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where both delivery threads note how late they released each batch past its delivery
    /// time: the agent's own delay, which marks an in-process viewer's window as self-noise
    /// beyond `stallwatch_measure::noise::EMULATOR_LATENESS_BOUND`.
    pub fn lateness(&self) -> &Arc<Lateness> {
        &self.shared.lateness
    }

    /// Holds `direction`'s queue, so its delivery thread cannot release anything until the
    /// guard is dropped: a delivery thread forced late, for tests.
    #[cfg(test)]
    pub(crate) fn hold_delivery(&self, direction: Direction) -> impl Drop + '_ {
        lock(&self.shared.pipe(direction).state)
    }

    /// The counters now.
    pub fn stats(&self) -> ImpairStats {
        let s = &self.shared;
        let sessions = lock(&s.sessions);
        ImpairStats {
            up: s.up.stats(),
            down: s.down.stats(),
            sessions: sessions.by_client.len() as u64,
            sessions_opened: sessions.opened,
            sessions_refused: sessions.refused,
        }
    }

    /// Stops every task and closes every socket; datagrams still held are discarded. Returns
    /// the final counts (no task runs any more when they are taken).
    pub async fn shutdown(mut self) -> ImpairStats {
        // First the task that opens sessions, then the sessions, then delivery.
        let tasks = std::mem::take(&mut self.tasks);
        stop(tasks).await;
        let sessions: Vec<_> =
            lock(&self.shared.sessions).by_client.drain().map(|(_, e)| e.task).collect();
        stop(sessions).await;
        self.shared.stop_delivery();
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                // A panic there was already reported on stderr.
                let _ = thread.join();
            }
        });
        let _ = joined.await;
        let stats = self.stats();
        debug!(listen = %self.local_addr, "impairment proxy stopped");
        stats
    }
}

impl Drop for ImpairProxy {
    /// Stops everything without waiting: tasks are aborted, delivery threads told to end.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.abort_sessions();
        self.shared.stop_delivery();
    }
}

/// State shared by the proxy's tasks.
#[derive(Debug)]
struct Shared {
    clock: Clock,
    /// The links' time origin.
    start: Time,
    to: SocketAddr,
    listen: Arc<UdpSocket>,
    limits: Limits,
    up: Pipe,
    down: Pipe,
    sessions: Mutex<Sessions>,
    /// How late either delivery thread released a datagram, for in-process viewers.
    lateness: Arc<Lateness>,
}

#[derive(Debug, Default)]
struct Sessions {
    by_client: HashMap<SocketAddr, SessionEntry>,
    opened: u64,
    refused: u64,
    last_refusal_warning: Option<Time>,
}

#[derive(Debug)]
struct SessionEntry {
    session: Arc<Session>,
    /// Receives from `to` for this client.
    task: JoinHandle<()>,
}

/// One client's mapping.
#[derive(Debug)]
struct Session {
    client: SocketAddr,
    /// Connected to `to`.
    socket: Arc<UdpSocket>,
    /// Link time of the last datagram either way, in nanoseconds.
    last_active: AtomicU64,
    up_datagrams: AtomicU64,
    down_datagrams: AtomicU64,
}

impl Session {
    fn touch(&self, now: Time, counter: &AtomicU64) {
        self.last_active.fetch_max(now.as_nanos(), atomic::Ordering::Relaxed);
        counter.fetch_add(1, atomic::Ordering::Relaxed);
    }
}

/// One direction: its link, its queue and its counters.
#[derive(Debug)]
struct Pipe {
    state: Mutex<PipeState>,
    /// Wakes the delivery thread when a datagram becomes the earliest one held, or on stop.
    wake: Condvar,
    /// Tells the delivery thread to end; set, then notified under `state`'s lock.
    stopping: AtomicBool,
    forwarded: AtomicU64,
    forward_errors: AtomicU64,
}

#[derive(Debug)]
struct PipeState {
    link: Link,
    queue: BinaryHeap<Reverse<Held>>,
    next_seq: u64,
    queued_bytes: usize,
    received: u64,
    overflow_dropped: u64,
    media_packets: u64,
    media_dropped: u64,
}

/// A datagram waiting for its delivery time.
#[derive(Debug)]
struct Held {
    /// Link time at which it leaves.
    at: Time,
    /// Arrival order within the direction, to break ties.
    seq: u64,
    /// Bytes charged against the queue limit.
    cost: usize,
    data: Box<[u8]>,
    /// The socket it leaves through.
    socket: Arc<UdpSocket>,
    /// `None` for a connected socket (up), the client for the listening socket (down).
    dest: Option<SocketAddr>,
}

impl Held {
    fn key(&self) -> (Time, u64) {
        (self.at, self.seq)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl Pipe {
    fn new(link: Link) -> Pipe {
        Pipe {
            state: Mutex::new(PipeState {
                link,
                queue: BinaryHeap::new(),
                next_seq: 0,
                queued_bytes: 0,
                received: 0,
                overflow_dropped: 0,
                media_packets: 0,
                media_dropped: 0,
            }),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            forward_errors: AtomicU64::new(0),
        }
    }

    fn stats(&self) -> DirectionStats {
        let st = lock(&self.state);
        DirectionStats {
            link: st.link.stats().clone(),
            received: st.received,
            overflow_dropped: st.overflow_dropped,
            media_packets: st.media_packets,
            media_dropped: st.media_dropped,
            forwarded: self.forwarded.load(atomic::Ordering::Relaxed),
            forward_errors: self.forward_errors.load(atomic::Ordering::Relaxed),
            queued: st.queue.len() as u64,
            queued_bytes: st.queued_bytes as u64,
        }
    }

    fn count_error(&self) {
        self.forward_errors.fetch_add(1, atomic::Ordering::Relaxed);
    }
}

impl Shared {
    fn pipe(&self, direction: Direction) -> &Pipe {
        match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }

    /// Now on the links' timeline.
    fn link_now(&self) -> Time {
        Time::from_nanos(self.clock.now().as_nanos().saturating_sub(self.start.as_nanos()))
    }

    /// Offers a datagram to `direction`'s link, and holds it if the link delivers it. Returns
    /// the link time it was offered at.
    fn offer(
        &self,
        direction: Direction,
        data: &[u8],
        socket: &Arc<UdpSocket>,
        dest: Option<SocketAddr>,
    ) -> Time {
        let pipe = self.pipe(direction);
        let media = data.first() == Some(&MEDIA_VERSION);
        let cost = data.len() + ENTRY_OVERHEAD;
        let mut st = lock(&pipe.state);
        let now = self.link_now();
        st.received += 1;
        st.media_packets += u64::from(media);
        if st.queued_bytes + cost > self.limits.max_queued_bytes {
            st.overflow_dropped += 1;
            st.media_dropped += u64::from(media);
            return now;
        }
        match st.link.send(now, data.len()) {
            Fate::Drop(_) => st.media_dropped += u64::from(media),
            Fate::Deliver(at) => {
                let seq = st.next_seq;
                st.next_seq += 1;
                st.queued_bytes += cost;
                let held = Held { at, seq, cost, data: data.into(), socket: socket.clone(), dest };
                st.queue.push(Reverse(held));
                // Only a new earliest datagram changes when the delivery thread must wake.
                if st.queue.peek().is_some_and(|Reverse(h)| h.seq == seq) {
                    pipe.wake.notify_one();
                }
            }
        }
        now
    }

    /// The session of `client`, opened if it is new and the table has room.
    async fn session(self: &Arc<Self>, client: SocketAddr) -> Option<Arc<Session>> {
        {
            let mut sessions = lock(&self.sessions);
            if let Some(entry) = sessions.by_client.get(&client) {
                return Some(entry.session.clone());
            }
            if sessions.by_client.len() >= self.limits.max_sessions {
                self.refuse(&mut sessions, client, "session table full");
                return None;
            }
        }
        // Only the one task that receives from clients opens sessions: no race to insert.
        let socket = match self.open_upstream().await {
            Ok(socket) => Arc::new(socket),
            Err(e) => {
                let mut sessions = lock(&self.sessions);
                self.refuse(&mut sessions, client, &format!("{e:#}"));
                return None;
            }
        };
        let session = Arc::new(Session {
            client,
            socket,
            last_active: AtomicU64::new(self.link_now().as_nanos()),
            up_datagrams: AtomicU64::new(0),
            down_datagrams: AtomicU64::new(0),
        });
        let task = tokio::spawn(receive_from_upstream(self.clone(), session.clone()));
        let upstream = session.socket.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut sessions = lock(&self.sessions);
        sessions.by_client.insert(client, SessionEntry { session: session.clone(), task });
        sessions.opened += 1;
        debug!(
            client = %client,
            upstream = %upstream,
            sessions = sessions.by_client.len(),
            "impair session started"
        );
        Some(session)
    }

    async fn open_upstream(&self) -> Result<UdpSocket> {
        let any: SocketAddr = if self.to.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(any).await.context("binding an upstream socket")?;
        socket.connect(self.to).await.with_context(|| format!("connecting to {}", self.to))?;
        Ok(socket)
    }

    fn refuse(&self, sessions: &mut Sessions, client: SocketAddr, why: &str) {
        sessions.refused += 1;
        let now = self.link_now();
        let quiet = sessions
            .last_refusal_warning
            .is_some_and(|t| now.saturating_since(t) < REFUSAL_WARNING_EVERY);
        if quiet {
            debug!(client = %client, reason = why, "impair datagram refused");
        } else {
            sessions.last_refusal_warning = Some(now);
            warn!(
                client = %client,
                reason = why,
                open = sessions.by_client.len(),
                refused = sessions.refused,
                "impair proxy refused a new client's datagram"
            );
        }
    }

    fn remove_idle(&self) {
        let now = self.link_now();
        let idle_timeout = self.limits.idle_timeout;
        let mut sessions = lock(&self.sessions);
        sessions.by_client.retain(|client, entry| {
            let s = &entry.session;
            let last = Time::from_nanos(s.last_active.load(atomic::Ordering::Relaxed));
            let idle = now.saturating_since(last);
            if idle < idle_timeout {
                return true;
            }
            entry.task.abort();
            debug!(
                client = %client,
                idle_ms = idle.as_millis() as u64,
                up = s.up_datagrams.load(atomic::Ordering::Relaxed),
                down = s.down_datagrams.load(atomic::Ordering::Relaxed),
                "impair session ended"
            );
            false
        });
    }

    /// Tells both delivery threads to end (they discard what they hold).
    fn stop_delivery(&self) {
        for pipe in [&self.up, &self.down] {
            pipe.stopping.store(true, atomic::Ordering::Relaxed);
            // Under the lock, so a thread between its check and its wait cannot miss it.
            let _state = lock(&pipe.state);
            pipe.wake.notify_all();
        }
    }

    fn abort_sessions(&self) {
        for (_, entry) in lock(&self.sessions).by_client.drain() {
            entry.task.abort();
        }
    }

    /// Handles a receive error on a socket whose earlier sends belong to `direction`.
    async fn receive_error(&self, direction: Direction, error: &io::Error) {
        match error.kind() {
            // An ICMP error about an earlier datagram (port unreachable and the like).
            io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
                self.pipe(direction).count_error();
                debug!(direction = %direction, error = %error, "impair forwarding error");
            }
            _ => {
                debug!(direction = %direction, error = %error, "impair receive error");
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// Receives from clients and offers each datagram to the up link.
async fn receive_from_clients(shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, client) = match shared.listen.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                shared.receive_error(Direction::Down, &e).await;
                continue;
            }
        };
        let Some(session) = shared.session(client).await else { continue };
        let now = shared.offer(Direction::Up, &buf[..len], &session.socket, None);
        session.touch(now, &session.up_datagrams);
    }
}

thread_local! {
    /// Receive buffer of the sessions running on this worker thread.
    static RECEIVE_BUFFER: RefCell<Box<[u8]>> =
        RefCell::new(vec![0u8; MAX_DATAGRAM].into_boxed_slice());
}

/// Receives from `to` for one session and offers each datagram to the down link.
async fn receive_from_upstream(shared: Arc<Shared>, session: Arc<Session>) {
    loop {
        let result = receive_in_thread_buffer(&session.socket, |data| {
            let now = shared.offer(Direction::Down, data, &shared.listen, Some(session.client));
            session.touch(now, &session.down_datagrams);
        })
        .await;
        if let Err(e) = result {
            shared.receive_error(Direction::Up, &e).await;
        }
    }
}

/// Waits for a datagram on a connected socket and hands it to `handle` in the worker thread's
/// buffer, so that an idle session holds no 64 KiB buffer of its own.
async fn receive_in_thread_buffer(
    socket: &UdpSocket,
    mut handle: impl FnMut(&[u8]),
) -> io::Result<()> {
    loop {
        socket.readable().await?;
        let received = RECEIVE_BUFFER
            .with_borrow_mut(|buf| socket.try_recv(buf).map(|len| handle(&buf[..len])));
        match received {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// One direction's delivery thread: sends each held datagram at its delivery time, in order,
/// until told to stop.
///
/// It waits on the direction's condition variable with a timeout until the earliest delivery
/// time (a futex wait: Linux adds its 50 µs timer slack, and the wake-up takes some tens of
/// microseconds more), and is woken early when an earlier datagram arrives. Sends use the tokio
/// sockets' non-blocking `try_send`, which needs no runtime context.
fn deliver(shared: &Shared, direction: Direction) {
    /// A queue that emptied gives back memory above this many entries.
    const KEEP_CAPACITY: usize = 4096;
    let pipe = shared.pipe(direction);
    let mut due: Vec<Held> = Vec::new();
    let mut st = lock(&pipe.state);
    loop {
        if pipe.stopping.load(atomic::Ordering::Relaxed) {
            return;
        }
        let now = shared.link_now();
        while st.queue.peek().is_some_and(|Reverse(h)| h.at <= now) {
            let Some(Reverse(held)) = st.queue.pop() else { break };
            st.queued_bytes -= held.cost;
            due.push(held);
        }
        if !due.is_empty() {
            drop(st);
            // The batch's largest lateness: how long after its delivery time each datagram left.
            let mut late = Duration::ZERO;
            for held in due.drain(..) {
                if pipe.stopping.load(atomic::Ordering::Relaxed) {
                    break;
                }
                late = late.max(shared.link_now().saturating_since(held.at));
                match send(&held, &pipe.stopping) {
                    Ok(_) => {
                        pipe.forwarded.fetch_add(1, atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        pipe.count_error();
                        debug!(direction = %direction, error = %e, "impair forwarding error");
                    }
                }
            }
            shared.lateness.note(late);
            if due.capacity() > KEEP_CAPACITY {
                due.shrink_to(KEEP_CAPACITY);
            }
            st = lock(&pipe.state);
            continue;
        }
        if st.queue.is_empty() && st.queue.capacity() > KEEP_CAPACITY {
            st.queue.shrink_to(KEEP_CAPACITY);
        }
        st = match st.queue.peek().map(|Reverse(h)| h.at.saturating_since(now)) {
            None => pipe.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
            Some(wait) => {
                pipe.wake.wait_timeout(st, wait).unwrap_or_else(PoisonError::into_inner).0
            }
        };
    }
}

/// Sends a held datagram, retrying for a while if the socket's send buffer is full (unless the
/// proxy is stopping).
fn send(held: &Held, stopping: &AtomicBool) -> io::Result<usize> {
    let mut blocked = Duration::ZERO;
    loop {
        let sent = match held.dest {
            None => held.socket.try_send(&held.data),
            Some(dest) => held.socket.try_send_to(&held.data, dest),
        };
        match sent {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && blocked < SEND_BLOCKED_LIMIT
                    && !stopping.load(atomic::Ordering::Relaxed) =>
            {
                thread::sleep(SEND_BLOCKED_RETRY);
                blocked += SEND_BLOCKED_RETRY;
            }
            other => return other,
        }
    }
}

/// Removes sessions idle for longer than the limit, checking a few times per timeout.
async fn remove_idle_sessions(shared: Arc<Shared>) {
    let period =
        (shared.limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.remove_idle();
    }
}

/// Aborts tasks and waits until none runs any more.
async fn stop(tasks: Vec<JoinHandle<()>>) {
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        // Cancelled, or a panic the runtime already reported.
        let _ = task.await;
    }
}

/// Locks a mutex, carrying on after a panic elsewhere (counters stay usable).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
