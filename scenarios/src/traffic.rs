//! The seeded traffic generator: who writes to whom, how much, and the messages themselves.
//!
//! One ChaCha generator seeded from the scenario drives every choice, in a fixed order, so the
//! same file and seed give byte-identical messages (dates are derived from the seed, not from the
//! clock).

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Exp, LogNormal, Zipf};

use crate::error::ScenarioError;
use crate::schema::Scenario;

/// A user: `local@domain` of system `system` (an index into the scenario's systems).
#[derive(Debug, Clone)]
pub struct User {
    pub system: usize,
    pub address: String,
    pub display: String,
}

#[derive(Debug, Clone)]
pub struct Generated {
    pub seq: u64,
    pub sender: usize,
    pub recipients: Vec<usize>,
    pub message_id: String,
    pub subject: String,
    /// The RFC 5322 message, CRLF line ends.
    pub bytes: Vec<u8>,
    /// Seconds after the start of traffic at which the message is submitted (Poisson arrivals;
    /// all zero when `traffic.rate` is 0). Deterministic for a seed.
    pub scheduled_at: f64,
}

const FIRST: &[&str] = &[
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Dorothy",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ivan",
    "Joan",
    "Ken",
    "Leslie",
    "Margaret",
    "Niklaus",
    "Radia",
    "Shafi",
    "Tim",
    "Whitfield",
    "Martin",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Vaughan",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Lamarr",
    "Sutherland",
    "Clarke",
    "Thompson",
    "Lamport",
    "Hamilton",
    "Wirth",
    "Perlman",
    "Goldwasser",
    "Berners-Lee",
    "Diffie",
    "Hellman",
];
const WORDS: &[&str] = &[
    "meeting", "budget", "draft", "review", "schedule", "proposal", "invoice", "quarter", "results", "network",
    "cipher", "relay", "archive", "weekend", "project", "deadline", "summary", "contract", "travel", "report", "lunch",
    "update", "question", "minutes", "agenda", "release", "patch", "server", "backup", "plan",
];

pub fn users(s: &Scenario) -> Vec<User> {
    let mut out = Vec::new();
    for (i, sys) in s.systems.iter().enumerate() {
        for u in 0..sys.users.unwrap_or(s.traffic.users_per_system) {
            let first = FIRST[(i * 7 + u) % FIRST.len()];
            let last = LAST[(i * 3 + u * 11) % LAST.len()];
            out.push(User {
                system: i,
                address: format!("{}.{}{}@{}", first.to_lowercase(), last.to_lowercase(), u, sys.domain),
                display: format!("{first} {last}"),
            });
        }
    }
    out
}

/// Base of the generated Date headers: 1997-11-29 00:00:00 UTC, the proposal's year.
const EPOCH: i64 = 880_761_600;

pub fn generate(s: &Scenario, users: &[User]) -> Result<Vec<Generated>, ScenarioError> {
    let t = &s.traffic;
    let mut rng = ChaCha20Rng::seed_from_u64(s.scenario.seed);
    let bad = |what: &str, e: &dyn std::fmt::Display| ScenarioError::Run(format!("traffic {what}: {e}"));
    let sizes = LogNormal::new(t.size_median.ln(), t.size_sigma).map_err(|e| bad("size distribution", &e))?;
    let attachment_sizes = LogNormal::new(t.attachment_median.ln(), 1.0).map_err(|e| bad("attachment size", &e))?;
    let arrivals = if t.rate > 0.0 { Some(Exp::new(t.rate).map_err(|e| bad("rate", &e))?) } else { None };
    // Popularity rank of every user: with Zipf, user k of a shuffled order is chosen with
    // probability proportional to 1/(k+1)^s. The shuffle keeps popularity independent of system.
    let mut popularity: Vec<usize> = (0..users.len()).collect();
    popularity.shuffle(&mut rng);
    let zipf = if t.correspondents == "zipf" {
        Some(Zipf::new(users.len() as f64, t.zipf_exponent).map_err(|e| bad("zipf", &e))?)
    } else {
        None
    };
    let mut clock = 0.0;
    let mut out = Vec::with_capacity(t.messages);
    for seq in 0..t.messages as u64 {
        if let Some(exp) = &arrivals {
            clock += exp.sample(&mut rng);
        }
        let sender = rng.random_range(0..users.len());
        let sender_sys = users[sender].system;
        let intra = rng.random_bool(t.intra_system_share);
        let eligible = |u: usize| u != sender && (users[u].system == sender_sys) == intra;
        let wanted = rng.random_range(1..=t.max_recipients);
        let mut recipients: Vec<usize> = Vec::new();
        match &zipf {
            Some(z) => {
                // Draw by popularity; give up after a bounded number of tries (tiny populations).
                for _ in 0..wanted * 20 {
                    let rank = (z.sample(&mut rng) as usize).saturating_sub(1).min(users.len() - 1);
                    let u = popularity[rank];
                    if eligible(u) && !recipients.contains(&u) {
                        recipients.push(u);
                        if recipients.len() == wanted {
                            break;
                        }
                    }
                }
            }
            None => {
                let candidates: Vec<usize> = (0..users.len()).filter(|&u| eligible(u)).collect();
                recipients = candidates.choose_multiple(&mut rng, wanted.min(candidates.len())).copied().collect();
            }
        }
        if recipients.is_empty() {
            // One system with one user, or nobody eligible: write to oneself.
            recipients.push(sender);
        }
        recipients.sort_unstable();
        let size = sizes.sample(&mut rng).clamp(200.0, 50.0 * 1024.0 * 1024.0) as usize;
        let subject = format!(
            "{} {} {}",
            capitalize(WORDS.choose(&mut rng).copied().unwrap_or("note")),
            WORDS.choose(&mut rng).copied().unwrap_or("note"),
            seq
        );
        let body = body_text(&mut rng, size);
        let attachment = rng.random_bool(t.attachment_probability).then(|| {
            let n = attachment_sizes.sample(&mut rng).clamp(16.0, 20.0 * 1024.0 * 1024.0) as usize;
            let mut bytes = vec![0u8; n];
            rng.fill(&mut bytes[..]);
            (format!("{}-{seq}.bin", WORDS.choose(&mut rng).copied().unwrap_or("file")), bytes)
        });
        let domain = &s.systems[sender_sys].domain;
        let message_id = format!("{}.{}.{}@{}", s.scenario.name, s.scenario.seed, seq, domain);
        let date = EPOCH + seq as i64 * 37 + rng.random_range(0..30);
        let to: Vec<Address> = recipients
            .iter()
            .map(|&r| Address::new_address(Some(users[r].display.clone()), users[r].address.clone()))
            .collect();
        let mut builder = MessageBuilder::new()
            .from(Address::new_address(Some(users[sender].display.clone()), users[sender].address.clone()))
            .to(Address::new_list(to))
            .subject(subject.clone())
            .message_id(message_id.clone())
            .date(date)
            .header("User-Agent", mail_builder::headers::raw::Raw::new("smtplab-traffic/0.1"))
            .text_body(body);
        if let Some((name, bytes)) = attachment {
            builder = builder.attachment("application/octet-stream", name, bytes);
        }
        let bytes = builder.write_to_vec().map_err(|e| bad(&format!("building message {seq}"), &e))?;
        let bytes = fix_boundaries(bytes, seq);
        out.push(Generated { seq, sender, recipients, message_id, subject, bytes, scheduled_at: clock });
    }
    Ok(out)
}

/// mail-builder draws MIME boundaries from a thread-local RNG; replace each with one derived from
/// the message's sequence number so the same seed gives byte-identical messages.
fn fix_boundaries(bytes: Vec<u8>, seq: u64) -> Vec<u8> {
    let text = String::from_utf8_lossy(&bytes);
    let mut boundaries: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(i) = line.find("boundary=\"") {
            let rest = &line[i + 10..];
            if let Some(end) = rest.find('"') {
                boundaries.push(rest[..end].to_string());
            }
        }
    }
    if boundaries.is_empty() {
        return bytes;
    }
    let mut text = text.into_owned();
    for (i, b) in boundaries.iter().enumerate() {
        text = text.replace(b.as_str(), &format!("smtplab-{seq:08}-{i}"));
    }
    text.into_bytes()
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Plain ASCII prose of about `size` bytes, in lines short enough to stay 7bit.
fn body_text(rng: &mut ChaCha20Rng, size: usize) -> String {
    let mut out = String::with_capacity(size + 80);
    let mut line = 0;
    while out.len() < size {
        let w = WORDS.choose(rng).copied().unwrap_or("word");
        if line + w.len() + 1 > 72 {
            out.push_str("\r\n");
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(w);
        line += w.len();
    }
    out.push_str("\r\n");
    out
}
