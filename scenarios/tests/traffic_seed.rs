//! The traffic generator is a function of the scenario and its seed: the same seed gives the same
//! messages byte for byte (MIME boundaries and Date headers included), another seed other ones,
//! with every draw in play (Poisson arrivals, attachments, Zipf correspondents).

use scenarios::Scenario;
use scenarios::traffic::{Generated, generate, users};

fn scenario(seed: u64, messages: usize) -> Scenario {
    let text = format!(
        r#"
[scenario]
name = "traffic-seed"
seed = {seed}

[traffic]
messages = {messages}
users_per_system = 10
size_median = 1500
rate = 50.0
attachment_probability = 0.3
attachment_median = 2000
correspondents = "zipf"

[[systems]]
name = "a"
domain = "a.example"
starttls = true

[[systems]]
name = "b"
domain = "b.example"
starttls = false

[[systems]]
name = "c"
domain = "c.example"
starttls = true
"#
    );
    Scenario::parse(&text, "traffic-seed.toml").expect("valid scenario")
}

fn messages(seed: u64, n: usize) -> Vec<Generated> {
    let s = scenario(seed, n);
    generate(&s, &users(&s)).expect("generate")
}

/// Everything the runner takes from a generated message, as one comparable value.
fn key(g: &Generated) -> (u64, usize, Vec<usize>, String, String, Vec<u8>, u64) {
    (
        g.seq,
        g.sender,
        g.recipients.clone(),
        g.message_id.clone(),
        g.subject.clone(),
        g.bytes.clone(),
        g.scheduled_at.to_bits(),
    )
}

#[test]
fn same_seed_same_messages_byte_for_byte() {
    let (a, b) = (messages(42, 60), messages(42, 60));
    assert_eq!(a.len(), 60);
    assert_eq!(a.iter().map(key).collect::<Vec<_>>(), b.iter().map(key).collect::<Vec<_>>());
    // The draws that could bring in outside randomness were made: attachments (mail-builder's
    // MIME boundaries come from its own thread RNG and are replaced by seeded ones).
    let with_attachment: Vec<&Generated> =
        a.iter().filter(|g| String::from_utf8_lossy(&g.bytes).contains("Content-Disposition: attachment")).collect();
    assert!(!with_attachment.is_empty() && with_attachment.len() < a.len(), "{}", with_attachment.len());
    for g in with_attachment {
        let text = String::from_utf8_lossy(&g.bytes);
        assert!(text.contains(&format!("boundary=\"smtplab-{:08}-0\"", g.seq)), "seeded boundary: {text:.400}");
    }
}

#[test]
fn another_seed_other_messages() {
    let (a, b) = (messages(42, 60), messages(43, 60));
    let same = a.iter().zip(&b).filter(|(x, y)| x.bytes == y.bytes).count();
    assert_eq!(same, 0, "no message is the same under another seed");
    let senders_same = a.iter().zip(&b).filter(|(x, y)| x.sender == y.sender).count();
    assert!(senders_same < 30, "senders are drawn afresh: {senders_same} of 60 equal");
    assert_ne!(a[0].scheduled_at, b[0].scheduled_at);
}

/// A prefix is stable: the first n messages of a longer run are the n messages of a shorter one
/// (every message's draws come in a fixed order, before the next message's).
#[test]
fn more_messages_extend_the_same_sequence() {
    let (short, long) = (messages(7, 20), messages(7, 50));
    assert_eq!(short.iter().map(key).collect::<Vec<_>>(), long[..20].iter().map(key).collect::<Vec<_>>());
}

#[test]
fn poisson_arrivals_and_zipf_correspondents() {
    let g = messages(5, 2000);
    // Arrivals: increasing times, mean gap 1/rate (50 per second) within 10% over 2000 gaps.
    assert!(g.windows(2).all(|w| w[1].scheduled_at >= w[0].scheduled_at));
    let mean_gap = g.last().expect("messages").scheduled_at / g.len() as f64;
    assert!((mean_gap - 0.02).abs() < 0.002, "mean gap {mean_gap}");
    // Zipf: the most popular recipient gets far more than the 1/29 a uniform choice would give.
    let mut received = std::collections::HashMap::<usize, usize>::new();
    for r in g.iter().flat_map(|m| &m.recipients) {
        *received.entry(*r).or_default() += 1;
    }
    let total: usize = received.values().sum();
    let top = received.values().max().copied().unwrap_or(0);
    assert!(top as f64 > 3.0 * total as f64 / 29.0, "top recipient {top} of {total}");
}
