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

use crate::error::{ScenarioError, TrafficError};
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
    /// The sender is one of the `traffic.requiretls_share` of users who use REQUIRETLS.
    pub requiretls: bool,
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

/// Every message of the scenario, in order, in memory. The runner streams from [`Generator`]
/// instead; this is for tests and small tools.
pub fn generate(s: &Scenario, users: &[User]) -> Result<Vec<Generated>, ScenarioError> {
    Generator::new(s, users)?.collect()
}

/// The traffic as a stream: each message is built when asked for, so a run holds only the
/// messages waiting to be submitted, never all of them (100,000 messages are ~400 MB).
///
/// It ends after `traffic.messages` messages, or, with `traffic.duration`, at the first Poisson
/// arrival at or past the duration. The random draws happen in the same order either way, so a
/// count and a duration that cover the same messages give the same messages.
pub struct Generator<'a> {
    s: &'a Scenario,
    users: &'a [User],
    rng: ChaCha20Rng,
    sizes: LogNormal<f64>,
    attachment_sizes: LogNormal<f64>,
    arrivals: Option<Exp<f64>>,
    /// Users by popularity rank (Zipf draws a rank; the shuffle keeps rank independent of system).
    popularity: Vec<usize>,
    zipf: Option<Zipf<f64>>,
    /// Per user: sends with REQUIRETLS.
    requiretls: Vec<bool>,
    /// Arrival time of the last message, seconds after the start of traffic.
    clock: f64,
    next_seq: u64,
    done: bool,
}

impl<'a> Generator<'a> {
    pub fn new(s: &'a Scenario, users: &'a [User]) -> Result<Self, ScenarioError> {
        let t = &s.traffic;
        let mut rng = ChaCha20Rng::seed_from_u64(s.scenario.seed);
        let sizes = LogNormal::new(t.size_median.ln(), t.size_sigma).map_err(TrafficError::Sizes)?;
        let attachment_sizes = LogNormal::new(t.attachment_median.ln(), 1.0).map_err(TrafficError::AttachmentSizes)?;
        let arrivals = if t.rate > 0.0 { Some(Exp::new(t.rate).map_err(TrafficError::Rate)?) } else { None };
        if users.is_empty() {
            return Err(TrafficError::NoUsers.into());
        }
        // Popularity rank of every user: with Zipf, user k of a shuffled order is chosen with
        // probability proportional to 1/(k+1)^s.
        let mut popularity: Vec<usize> = (0..users.len()).collect();
        popularity.shuffle(&mut rng);
        let zipf = if t.correspondents == "zipf" {
            Some(Zipf::new(users.len() as f64, t.zipf_exponent).map_err(TrafficError::Zipf)?)
        } else {
            None
        };
        // Its own generator: the main one's draws, and so every message of a seed, do not move
        // when the share changes.
        let mut choice = ChaCha20Rng::seed_from_u64(s.scenario.seed ^ 0x7265_7175_6972_6574);
        let requiretls = (0..users.len()).map(|_| choice.random_bool(t.requiretls_share)).collect();
        Ok(Self {
            s,
            users,
            requiretls,
            rng,
            sizes,
            attachment_sizes,
            arrivals,
            popularity,
            zipf,
            clock: 0.0,
            next_seq: 0,
            done: false,
        })
    }

    /// Messages this generator yields in all: exact for a count, the expectation (rate ×
    /// duration) for a duration. For progress bars.
    pub fn expected(&self) -> u64 {
        match self.s.traffic.duration {
            Some(d) => (d * self.s.traffic.rate).round() as u64,
            None => self.s.traffic.message_count() as u64,
        }
    }

    fn build(&mut self, seq: u64, scheduled_at: f64) -> Result<Generated, ScenarioError> {
        let (s, users, t) = (self.s, self.users, &self.s.traffic);
        let rng = &mut self.rng;
        let sender = rng.random_range(0..users.len());
        let sender_sys = users[sender].system;
        let intra = rng.random_bool(t.intra_system_share);
        let eligible = |u: usize| u != sender && (users[u].system == sender_sys) == intra;
        let wanted = rng.random_range(1..=t.max_recipients);
        let mut recipients: Vec<usize> = Vec::new();
        match &self.zipf {
            Some(z) => {
                // Draw by popularity; give up after a bounded number of tries (tiny populations).
                for _ in 0..wanted * 20 {
                    let rank = (z.sample(rng) as usize).saturating_sub(1).min(users.len() - 1);
                    let u = self.popularity[rank];
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
                recipients = candidates.choose_multiple(rng, wanted.min(candidates.len())).copied().collect();
            }
        }
        if recipients.is_empty() {
            // One system with one user, or nobody eligible: write to oneself.
            recipients.push(sender);
        }
        recipients.sort_unstable();
        let size = self.sizes.sample(rng).clamp(200.0, 50.0 * 1024.0 * 1024.0) as usize;
        let subject = format!(
            "{} {} {}",
            capitalize(WORDS.choose(rng).copied().unwrap_or("note")),
            WORDS.choose(rng).copied().unwrap_or("note"),
            seq
        );
        let body = body_text(rng, size);
        let attachment_sizes = &self.attachment_sizes;
        let attachment = rng.random_bool(t.attachment_probability).then(|| {
            let n = attachment_sizes.sample(rng).clamp(16.0, 20.0 * 1024.0 * 1024.0) as usize;
            let mut bytes = vec![0u8; n];
            rng.fill(&mut bytes[..]);
            (format!("{}-{seq}.bin", WORDS.choose(rng).copied().unwrap_or("file")), bytes)
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
        let bytes = builder.write_to_vec().map_err(|source| TrafficError::Build { seq, source })?;
        let bytes = fix_boundaries(bytes, seq);
        let requiretls = self.requiretls[sender];
        Ok(Generated { seq, sender, recipients, message_id, subject, bytes, scheduled_at, requiretls })
    }
}

impl Iterator for Generator<'_> {
    type Item = Result<Generated, ScenarioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let t = &self.s.traffic;
        if t.duration.is_none() && self.next_seq >= t.message_count() as u64 {
            self.done = true;
            return None;
        }
        if let Some(exp) = &self.arrivals {
            self.clock += exp.sample(&mut self.rng);
        }
        // Arrivals at or past the duration are not part of the traffic.
        if t.duration.is_some_and(|d| self.clock >= d) {
            self.done = true;
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let item = self.build(seq, self.clock);
        self.done = item.is_err();
        Some(item)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(traffic: &str) -> Scenario {
        let text = format!(
            "[scenario]\nname = \"t\"\nseed = 5\n[traffic]\n{traffic}\n\
             [[systems]]\nname = \"a\"\ndomain = \"a.example\"\nstarttls = true\n\
             [[systems]]\nname = \"b\"\ndomain = \"b.example\"\nstarttls = false\n"
        );
        Scenario::parse(&text, "t.toml").expect("valid scenario")
    }

    fn fingerprint(s: &Scenario) -> Vec<(u64, String, Vec<u8>, f64)> {
        let users = users(s);
        generate(s, &users)
            .expect("generates")
            .into_iter()
            .map(|g| (g.seq, g.message_id, g.bytes, g.scheduled_at))
            .collect()
    }

    #[test]
    fn duration_mode_same_seed_same_messages() {
        let s = scenario("duration = 30\nrate = 2.0\nattachment_probability = 0.3");
        let (a, b) = (fingerprint(&s), fingerprint(&s));
        assert_eq!(a, b, "the same file and seed give the same message set");
        // About rate × duration arrivals, all inside the duration, in time order.
        assert!((30..=90).contains(&a.len()), "{} messages for an expected 60", a.len());
        assert!(a.iter().all(|m| m.3 < 30.0), "an arrival past the duration was generated");
        assert!(a.windows(2).all(|w| w[0].3 <= w[1].3));
        let other = scenario("duration = 30\nrate = 2.0\nattachment_probability = 0.3");
        let mut other = other;
        other.scenario.seed = 6;
        assert_ne!(fingerprint(&other), a, "another seed, other messages");
    }

    #[test]
    fn a_duration_and_a_count_covering_the_same_arrivals_agree() {
        let by_time = fingerprint(&scenario("duration = 20\nrate = 3.0"));
        let by_count = fingerprint(&scenario(&format!("messages = {}\nrate = 3.0", by_time.len())));
        assert_eq!(by_time, by_count);
    }

    #[test]
    fn the_stream_is_the_whole_traffic_one_message_at_a_time() {
        let s = scenario("messages = 25");
        let users = users(&s);
        let mut g = Generator::new(&s, &users).expect("generator");
        assert_eq!(g.expected(), 25);
        let first = g.next().expect("one").expect("built");
        assert_eq!(first.seq, 0);
        assert_eq!(g.count(), 24);
    }
}
