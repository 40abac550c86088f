use super::*;

const MS: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Send `n` packets of `size` bytes, `gap` apart from time zero.
fn run(link: &mut Link, n: u64, gap: Duration, size: usize) -> Vec<(Time, Fate)> {
    (0..n)
        .map(|i| {
            let now = Time::from_nanos(i * gap.as_nanos() as u64);
            (now, link.send(now, size))
        })
        .collect()
}

fn assert_conserved(s: &LinkStats) {
    assert_eq!(s.packets, s.delivered + s.dropped(), "{s:?}");
}

#[test]
fn perfect_link_delivers_everything_at_now() {
    let mut link = Link::new(LinkConfig::default(), 1);
    for (now, fate) in run(&mut link, 1000, MS, 1200) {
        assert_eq!(fate, Fate::Deliver(now));
    }
    let s = link.stats();
    assert_eq!(
        (s.packets, s.bytes, s.delivered, s.dropped(), s.reordered),
        (1000, 1_200_000, 1000, 0, 0)
    );
}

#[test]
fn fixed_delay_is_exact() {
    let config = LinkConfig { delay: Duration::from_micros(45_250), ..LinkConfig::default() };
    let mut link = Link::new(config, 1);
    for (now, fate) in run(&mut link, 1000, Duration::from_micros(333), 100) {
        assert_eq!(fate, Fate::Deliver(now + Duration::from_micros(45_250)));
    }
}

#[test]
fn random_loss_is_binomial() {
    let (n, p) = (100_000_u64, 0.02);
    let mut link = Link::new(LinkConfig { loss: p, ..LinkConfig::default() }, 7);
    let fates = run(&mut link, n, MS, 100);
    let dropped = fates.iter().filter(|(_, f)| *f == Fate::Drop(DropReason::Random)).count() as f64;
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (dropped - mean).abs() <= 3.0 * sd,
        "dropped {dropped}, expected {mean} ± {}",
        3.0 * sd
    );
    let s = link.stats();
    assert_eq!(s.dropped_random as f64, dropped);
    assert_eq!(s.dropped(), s.dropped_random);
    assert_conserved(s);
}

#[test]
fn gilbert_elliott_fit_recovers_p_and_r() {
    let (p, r) = (0.01, 0.25);
    let ge = GilbertElliott::new(p, r);
    let config = LinkConfig { gilbert_elliott: Some(ge), ..LinkConfig::default() };
    let mut link = Link::new(config, 42);
    let lost: Vec<bool> =
        run(&mut link, 200_000, MS, 100).iter().map(|(_, f)| matches!(f, Fate::Drop(_))).collect();

    let (mut ok_then_any, mut ok_then_lost, mut lost_then_any, mut lost_then_ok) = (0, 0, 0, 0);
    for w in lost.windows(2) {
        if w[0] {
            lost_then_any += 1;
            lost_then_ok += usize::from(!w[1]);
        } else {
            ok_then_any += 1;
            ok_then_lost += usize::from(w[1]);
        }
    }
    let fitted_p = ok_then_lost as f64 / ok_then_any as f64;
    let fitted_r = lost_then_ok as f64 / lost_then_any as f64;
    let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
    let within_10_percent = |got: f64, want: f64| (got - want).abs() <= 0.1 * want;
    assert!(within_10_percent(fitted_p, p), "p' = {fitted_p}");
    assert!(within_10_percent(fitted_r, r), "r' = {fitted_r}");
    assert!(within_10_percent(rate, p / (p + r)), "loss rate {rate}");
    assert_eq!(ge.stationary_loss(), p / (p + r));

    let s = link.stats();
    assert_eq!(s.dropped_burst, s.dropped());
    assert_eq!(s.dropped_burst as usize, lost.iter().filter(|&&l| l).count());
    assert_conserved(s);
}

#[test]
fn bottleneck_rate_and_drop_tail() {
    // 1 Mbit/s carries one 1250-byte packet per 10 ms, 100 pps; 200 pps are offered for 10 s.
    let queue_limit = ms(200);
    let config = LinkConfig { rate_bps: Some(1_000_000), queue_limit, ..LinkConfig::default() };
    let mut link = Link::new(config, 3);
    let fates = run(&mut link, 2000, ms(5), 1250);
    let tx = ms(10);

    let mut delivered = Vec::new();
    for &(now, fate) in &fates {
        match fate {
            Fate::Deliver(at) => {
                // Waiting time before transmission starts never exceeds the limit.
                let wait = at.saturating_since(now) - tx;
                assert!(wait <= queue_limit, "waited {wait:?}");
                delivered.push(at);
            }
            Fate::Drop(reason) => assert_eq!(reason, DropReason::QueueFull),
        }
    }
    // The queue is full after a fraction of a second; from then on the link is saturated.
    let in_window = delivered
        .iter()
        .filter(|&&t| t >= Time::from_millis(2000) && t < Time::from_millis(10_000))
        .count() as f64;
    let pps = in_window / 8.0;
    assert!((pps - 100.0).abs() <= 1.0, "delivered {pps} pps");

    let s = link.stats();
    assert_eq!(s.delivered as usize, delivered.len());
    assert_eq!(s.dropped_queue, 2000 - s.delivered);
    assert!(s.dropped_queue > 900, "{s:?}");
    assert_eq!(s.dropped(), s.dropped_queue);
    assert_eq!(s.reordered, 0);
    assert_conserved(s);
}

#[test]
fn zero_rate_carries_nothing() {
    let mut link = Link::new(LinkConfig { rate_bps: Some(0), ..LinkConfig::default() }, 1);
    assert_eq!(link.send(Time::ZERO, 1), Fate::Drop(DropReason::QueueFull));
    assert_eq!(link.stats().dropped_queue, 1);
}

#[test]
fn jitter_reorders_only_without_preserve_order() {
    let jittery = |preserve_order| LinkConfig {
        delay: ms(50),
        jitter: ms(20),
        preserve_order,
        ..LinkConfig::default()
    };

    let mut link = Link::new(jittery(false), 9);
    let fates = run(&mut link, 10_000, ms(10), 100);
    let mut latest = Time::ZERO;
    let mut overtakers = 0;
    for &(now, fate) in &fates {
        let at = fate.delivery_time().expect("no loss configured");
        let one_way = at.saturating_since(now);
        assert!(one_way >= ms(30) && one_way <= ms(70), "one-way {one_way:?}");
        overtakers += u64::from(at < latest);
        latest = latest.max(at);
    }
    assert!(overtakers > 100, "only {overtakers} packets reordered");
    assert_eq!(link.stats().reordered, overtakers);

    let mut link = Link::new(jittery(true), 9);
    let times: Vec<Time> = run(&mut link, 10_000, ms(10), 100)
        .iter()
        .map(|(_, f)| f.delivery_time().expect("no loss configured"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "FIFO delivery went backwards");
    assert_eq!(link.stats().reordered, 0);
}

#[test]
fn custom_jitter_keeps_packet_order_unless_asked_to_reorder() {
    // The demo's latam/wifi settings: access links deliver in order.
    let mut link = Link::new("delay=90ms,jitter=8ms,loss=0.3%".parse().unwrap(), 4);
    let times: Vec<Time> =
        run(&mut link, 10_000, ms(1), 100).iter().filter_map(|(_, f)| f.delivery_time()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(link.stats().reordered, 0);
    let mut link = Link::new("delay=90ms,jitter=8ms,order=any".parse().unwrap(), 4);
    let _ = run(&mut link, 10_000, ms(1), 100);
    assert!(link.stats().reordered > 1_000, "{:?}", link.stats());
}

#[test]
fn reorder_holds_packets_even_with_preserve_order() {
    let config = LinkConfig {
        delay: ms(20),
        reorder: 0.1,
        reorder_delay: ms(25),
        preserve_order: true,
        ..LinkConfig::default()
    };
    let mut link = Link::new(config, 5);
    let fates = run(&mut link, 10_000, ms(10), 100);
    let mut held = 0;
    for &(now, fate) in &fates {
        let one_way = fate.delivery_time().unwrap().saturating_since(now);
        // A held packet does not hold back the ones behind it.
        assert!(one_way == ms(20) || one_way == ms(45), "one-way {one_way:?}");
        held += u64::from(one_way == ms(45));
    }
    assert!((800..1200).contains(&held), "held {held}");
    // With 10 ms between packets, the two packets after a held one (if not held themselves)
    // overtake it.
    assert!(link.stats().reordered > held, "{:?}", link.stats());
}

#[test]
fn outage_drops_exactly_the_packets_entering_it() {
    let outage = Outage { start: Time::from_millis(1000), duration: ms(300) };
    let config = LinkConfig { delay: ms(30), outages: vec![outage], ..LinkConfig::default() };
    let mut link = Link::new(config, 1);
    // Packets every 10 ms from 0 to 3 s: includes 1000 ms (dropped) and 1300 ms (delivered).
    let fates = run(&mut link, 300, ms(10), 100);
    let expected = fates
        .iter()
        .filter(|(now, _)| *now >= Time::from_millis(1000) && *now < Time::from_millis(1300))
        .count();
    assert_eq!(expected, 30);
    for &(now, fate) in &fates {
        if now >= outage.start && now < outage.end() {
            assert_eq!(fate, Fate::Drop(DropReason::Outage), "at {now:?}");
        } else {
            assert_eq!(fate, Fate::Deliver(now + ms(30)), "at {now:?}");
        }
    }
    assert_eq!(link.stats().dropped_outage as usize, expected);
    assert_eq!(link.stats().dropped(), link.stats().dropped_outage);
}

#[test]
fn outages_may_overlap_come_unsorted_and_time_may_go_back() {
    let at = Time::from_millis;
    let config = LinkConfig {
        outages: vec![
            Outage { start: at(500), duration: ms(100) },
            Outage { start: at(100), duration: ms(100) },
            Outage { start: at(150), duration: ms(100) },
            Outage { start: at(50), duration: Duration::ZERO },
        ],
        ..LinkConfig::default()
    };
    let mut link = Link::new(config, 1);
    let dropped =
        |link: &mut Link, t| matches!(link.send(at(t), 1), Fate::Drop(DropReason::Outage));
    assert!(!dropped(&mut link, 50));
    assert!(dropped(&mut link, 100));
    assert!(dropped(&mut link, 249));
    assert!(!dropped(&mut link, 250));
    assert!(dropped(&mut link, 599));
    assert!(!dropped(&mut link, 600));
    assert!(dropped(&mut link, 120), "time going back still finds the outage");
    assert!(!dropped(&mut link, 400));
}

fn everything() -> LinkConfig {
    LinkConfig {
        delay: ms(40),
        jitter: ms(15),
        loss: 0.05,
        gilbert_elliott: Some(GilbertElliott::new(0.02, 0.3)),
        rate_bps: Some(2_000_000),
        queue_limit: ms(100),
        reorder: 0.02,
        reorder_delay: ms(30),
        preserve_order: false,
        outages: vec![Outage { start: Time::from_millis(2000), duration: ms(500) }],
        ramp: None,
    }
}

#[test]
fn same_seed_same_fates_different_seed_different_fates() {
    let fates = |seed| run(&mut Link::new(everything(), seed), 5000, ms(2), 1000);
    let a = fates(11);
    assert_eq!(a, fates(11));
    assert_ne!(a, fates(12));

    let mut link = Link::new(everything(), 11);
    let _ = run(&mut link, 5000, ms(2), 1000);
    let s = link.stats();
    assert_conserved(s);
    for (reason, count) in [
        (DropReason::Random, s.dropped_random),
        (DropReason::Burst, s.dropped_burst),
        (DropReason::QueueFull, s.dropped_queue),
        (DropReason::Outage, s.dropped_outage),
    ] {
        let seen = a.iter().filter(|(_, f)| *f == Fate::Drop(reason)).count() as u64;
        assert_eq!(seen, count, "{reason}");
        assert!(count > 0, "{reason} never happened");
    }
    assert!(s.reordered > 0);
}

#[test]
fn changing_one_knob_keeps_the_other_draws() {
    let with_loss = |loss| LinkConfig {
        loss,
        delay: ms(10),
        jitter: ms(5),
        // FIFO would tie each delivery to the previous survivor's; compare raw draws.
        preserve_order: false,
        ..LinkConfig::default()
    };
    let low = run(&mut Link::new(with_loss(0.01), 3), 20_000, MS, 100);
    let high = run(&mut Link::new(with_loss(0.02), 3), 20_000, MS, 100);
    for ((_, l), (_, h)) in low.iter().zip(&high) {
        match (l, h) {
            (Fate::Drop(_), h) => {
                assert!(matches!(h, Fate::Drop(_)), "2% kept a packet 1% dropped")
            }
            (Fate::Deliver(a), Fate::Deliver(b)) => {
                assert_eq!(a, b, "jitter changed with loss")
            }
            (Fate::Deliver(_), Fate::Drop(_)) => {}
        }
    }
}

#[test]
fn parses_the_cli_example() {
    let c: LinkConfig =
        "delay=100ms,jitter=20ms,loss=1%,ge=0.01/0.3,rate=2mbit,queue=300ms,reorder=0.5%/20ms"
            .parse()
            .unwrap();
    let want = LinkConfig {
        delay: ms(100),
        jitter: ms(20),
        loss: 0.01,
        gilbert_elliott: Some(GilbertElliott { p: 0.01, r: 0.3, loss_good: 0.0, loss_bad: 1.0 }),
        rate_bps: Some(2_000_000),
        queue_limit: ms(300),
        reorder: 0.005,
        reorder_delay: ms(20),
        preserve_order: true,
        outages: vec![],
        ramp: None,
    };
    assert_eq!(c, want);
    assert_eq!(c.to_string().parse::<LinkConfig>(), Ok(want));
}

#[test]
fn parses_the_other_forms() {
    let c: LinkConfig =
        " delay = 1.5s , jitter=250us, loss=0.02, ge=1%/30%/0.1%/80%, rate=1.2MBIT, \
                         order=any, outage=10s/2s, outage=1m/500ms, "
            .parse()
            .unwrap();
    assert_eq!((c.delay, c.jitter, c.loss), (ms(1500), Duration::from_micros(250), 0.02));
    let ge = c.gilbert_elliott.unwrap();
    assert!((ge.loss_good - 0.001).abs() < 1e-15 && (ge.loss_bad - 0.8).abs() < 1e-15, "{ge:?}");
    assert_eq!(c.rate_bps, Some(1_200_000));
    assert!(!c.preserve_order);
    assert_eq!(
        c.outages,
        [
            Outage { start: Time::from_millis(10_000), duration: ms(2000) },
            Outage { start: Time::from_millis(60_000), duration: ms(500) },
        ]
    );
    assert_eq!(c.to_string().parse::<LinkConfig>(), Ok(c));
    for (text, rate) in
        [("rate=64000bps", 64_000), ("rate=500kbit", 500_000), ("rate=1gbit", 1_000_000_000)]
    {
        assert_eq!(text.parse::<LinkConfig>().unwrap().rate_bps, Some(rate), "{text}");
    }
    assert_eq!("".parse::<LinkConfig>(), Ok(LinkConfig::default()));
    assert_eq!("none".parse::<LinkConfig>(), Ok(LinkConfig::default()));
    assert_eq!(LinkConfig::default().to_string(), "none");
    assert_eq!("delay=0".parse::<LinkConfig>(), Ok(LinkConfig::default()));
    let c: LinkConfig = "delay=45ms,ramp=20s/1.5m/4%/150ms".parse().unwrap();
    let ramp = Ramp {
        start: ms(20_000),
        duration: ms(90_000),
        loss: 0.04,
        delay: ms(150),
        joined: Duration::ZERO,
    };
    assert_eq!(c.ramp, Some(ramp));
    assert_eq!(c.to_string(), "delay=45ms,ramp=20s/90s/0.04/150ms");
    assert_eq!(c.to_string().parse::<LinkConfig>(), Ok(c.clone()));
    let joined = c.joined_at(ms(30_000)).ramp.unwrap();
    assert_eq!(joined, Ramp { joined: ms(30_000), ..ramp });
}

/// `--emulate` reads durations as config files do: compound units and days included.
#[test]
fn durations_take_the_config_syntax() {
    let c: LinkConfig = "delay=0.25s,jitter=1ms500us,outage=1h30m/2m30s".parse().unwrap();
    assert_eq!((c.delay, c.jitter), (ms(250), Duration::from_micros(1500)));
    assert_eq!(c.outages, [Outage { start: Time::from_millis(5_400_000), duration: ms(150_000) }]);
    assert_eq!(c.to_string().parse::<LinkConfig>(), Ok(c));
}

#[test]
fn parse_errors_name_the_key() {
    let err = |s: &str| s.parse::<LinkConfig>().unwrap_err().to_string();
    for (input, key, detail) in [
        ("loss=150%", "loss", "between 0% and 100%"),
        ("delay=abc", "delay", "expected a number at \"abc\""),
        ("delay=10 ms", "delay", "spaces are not allowed"),
        ("queue=1.5ns", "queue", "finer than a nanosecond"),
        ("outage=10s/2x", "outage", "unknown unit \"x\""),
        ("bogus=1", "bogus", "unknown key"),
        ("jitter=10", "jitter", "\"10\" has no unit"),
        ("delay=-5ms", "delay", "negative"),
        ("rate=2mbyte", "rate", "unknown unit"),
        ("rate=0kbit", "rate", "at least 1bps"),
        ("ge=0.1", "ge", "expected p/r"),
        ("ge=0.1/2", "ge", "r:"),
        ("reorder=1%", "reorder", "probability/delay"),
        ("order=lifo", "order", "fifo or any"),
        ("delay=1ms,delay=2ms", "delay", "more than once"),
        ("delay", "delay", "key=value"),
        ("ramp=10s/60s/4%", "ramp", "start/duration/loss/delay"),
        ("ramp=10s/1m/4/100ms", "ramp", "loss:"),
    ] {
        let message = err(input);
        assert!(message.contains(key) && message.contains(detail), "{input}: {message}");
    }
    assert_eq!(
        err("loss=150%"),
        "invalid loss \"150%\": a probability must be between 0% and 100%"
    );
    assert!(err("bogus=1").starts_with("unknown key \"bogus\""));
}

#[test]
fn probabilities_out_of_range_are_clamped() {
    let config =
        LinkConfig { loss: f64::NAN, reorder: 7.0, reorder_delay: ms(1), ..LinkConfig::default() };
    let mut link = Link::new(config, 1);
    assert_eq!(link.send(Time::ZERO, 1), Fate::Deliver(Time::ZERO + ms(1)));
    let mut link = Link::new(LinkConfig { loss: 2.0, ..LinkConfig::default() }, 1);
    assert_eq!(link.send(Time::ZERO, 1), Fate::Drop(DropReason::Random));
}
