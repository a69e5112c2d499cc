//! The seeded traffic generator: who writes to whom, how much, and the messages themselves.
//!
//! One ChaCha generator seeded from the scenario drives every choice, in a fixed order, so the
//! same file and seed give byte-identical messages (dates are derived from the seed, not from the
//! clock).

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, LogNormal};

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
        for u in 0..s.traffic.users_per_system {
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
    let sizes = LogNormal::new(t.size_median.ln(), t.size_sigma)
        .map_err(|e| ScenarioError::Run(format!("traffic size distribution: {e}")))?;
    let n_systems = s.systems.len();
    let mut out = Vec::with_capacity(t.messages);
    for seq in 0..t.messages as u64 {
        let sender = rng.random_range(0..users.len());
        let sender_sys = users[sender].system;
        let intra = rng.random_bool(t.intra_system_share);
        let candidates: Vec<usize> =
            (0..users.len()).filter(|&u| u != sender && (users[u].system == sender_sys) == intra).collect();
        let wanted = rng.random_range(1..=t.max_recipients).min(candidates.len().max(1));
        let mut recipients: Vec<usize> = candidates.choose_multiple(&mut rng, wanted).copied().collect();
        if recipients.is_empty() {
            // One system with one user: write to oneself.
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
        let domain = &s.systems[sender_sys].domain;
        let message_id = format!("{}.{}.{}@{}", s.scenario.name, s.scenario.seed, seq, domain);
        let date = EPOCH + seq as i64 * 37 + rng.random_range(0..30);
        let to: Vec<Address> = recipients
            .iter()
            .map(|&r| Address::new_address(Some(users[r].display.clone()), users[r].address.clone()))
            .collect();
        let bytes = MessageBuilder::new()
            .from(Address::new_address(Some(users[sender].display.clone()), users[sender].address.clone()))
            .to(Address::new_list(to))
            .subject(subject.clone())
            .message_id(message_id.clone())
            .date(date)
            .header("User-Agent", mail_builder::headers::raw::Raw::new("smtplab-traffic/0.1"))
            .text_body(body)
            .write_to_vec()
            .map_err(|e| ScenarioError::Run(format!("building message {seq}: {e}")))?;
        let _ = n_systems;
        out.push(Generated { seq, sender, recipients, message_id, subject, bytes });
    }
    Ok(out)
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
