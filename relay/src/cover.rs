//! Cover traffic, a remailer-style countermeasure against traffic analysis at system level:
//! the relay sends dummy messages to other systems at a configured rate (Poisson arrivals from
//! a seeded generator), through its own queue and outbound path, so they travel as mail does
//! (STARTTLS, connection reuse, padding and batching as configured) and an eavesdropper on an
//! encrypted line counts them as mail. The receiving smtplab relay recognises them and drops
//! them after the end of data, answering `250` as for any message: they never reach a mailbox.
//!
//! The marker is the envelope: a cover message goes from and to the reserved local part
//! [`LOCAL_PART`] (`smtplab-cover@<domain>`). Inside TLS the eavesdropper cannot see it. On a
//! plaintext line it sees everything, the marker included: cover hides nothing there, and a
//! passive observer can subtract it (SCENARIOS.md says so). The receiving relay trusts the
//! marker from anyone: in the lab every system is smtplab; a real deployment would need a
//! shared secret.
//!
//! Both relays' session records list the message with `cover = true` (records::HopMessage), so
//! the ground truth counts cover apart from mail.
//!
//! The marker ([`crate::cover_marker`]) and the sizes and rate allowed ([`crate::cover_limits`])
//! are modules of their own: the receiving session, the outbound session and the configuration
//! read them without the generator, which needs the relay's shared state.

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};
use tokio::sync::watch;

use crate::cover_limits::{COVER_MAX_BYTES, COVER_MAX_RATE, COVER_MIN_BYTES};
pub use crate::cover_marker::{LOCAL_PART, is_cover, is_cover_address};
use crate::domain::normalize_domain;
/// What [`CoverConfig::check`] finds wrong; [`crate::error::RelayError::Cover`] carries it.
pub use crate::error::CoverError;
use crate::shared::Shared;
use crate::spool::Envelope;

/// The sizes cover messages are drawn with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CoverSizes {
    /// Every message this many bytes.
    Fixed(u64),
    /// Log-normal with this median (bytes) and sigma, as the scenario's traffic generator draws
    /// real messages.
    LogNormal { median: f64, sigma: f64 },
}

/// What [`crate::RelayHandle::start_cover`] needs beyond the relay's configuration.
#[derive(Debug, Clone)]
pub struct CoverConfig {
    /// Messages per second, all destinations together (Poisson arrivals).
    pub rate: f64,
    pub sizes: CoverSizes,
    /// Domains to send to, each message's drawn uniformly (the other systems' domains).
    pub destinations: Vec<String>,
    /// Seeds the generator: the same seed gives the same sequence of destinations, sizes,
    /// gaps and contents.
    pub seed: u64,
}

impl CoverConfig {
    /// Checks what a caller may get wrong; the error says what.
    pub fn check(&self) -> Result<(), CoverError> {
        if !(self.rate > 0.0 && self.rate <= COVER_MAX_RATE) {
            return Err(CoverError::Rate { rate: self.rate });
        }
        if self.destinations.is_empty() {
            return Err(CoverError::NoDestinations);
        }
        match self.sizes {
            CoverSizes::Fixed(bytes) if !(COVER_MIN_BYTES..=COVER_MAX_BYTES).contains(&bytes) => {
                Err(CoverError::Size { bytes })
            }
            CoverSizes::LogNormal { median, sigma } if !(median > 0.0 && median.is_finite() && sigma >= 0.0) => {
                Err(CoverError::LogNormal { median, sigma })
            }
            _ => Ok(()),
        }
    }
}

/// The generator: draws a gap, waits, queues one cover message, until `stop` says so (the run's
/// traffic ended, or the relay shuts down). A message already queued is delivered as any other.
pub(crate) async fn generate(shared: Arc<Shared>, cfg: CoverConfig, mut stop: watch::Receiver<bool>) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(cfg.seed);
    let Ok(gaps) = Exp::new(cfg.rate) else { return };
    let sizes = match cfg.sizes {
        CoverSizes::Fixed(n) => Sizes::Fixed(n),
        CoverSizes::LogNormal { median, sigma } => match LogNormal::new(median.ln(), sigma) {
            Ok(d) => Sizes::LogNormal(d),
            Err(_) => return,
        },
    };
    let own = shared.cfg.local_domains.first().map(|d| normalize_domain(d)).unwrap_or_default();
    let start = tokio::time::Instant::now();
    let mut at = 0.0f64;
    for n in 0u64.. {
        at += gaps.sample(&mut rng);
        let when = start + Duration::from_secs_f64(at.min(1e9));
        tokio::select! {
            _ = tokio::time::sleep_until(when) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if *stop.borrow() {
            return;
        }
        let dest = &cfg.destinations[rng.random_range(0..cfg.destinations.len())];
        let size = sizes.draw(&mut rng);
        let message_id = format!("cover.{n}.{:016x}@{}", rng.random::<u64>(), shared.cfg.hostname);
        let message = build(&own, dest, &message_id, size, &mut rng);
        let env = Envelope {
            qid: shared.spool.new_qid(),
            message_id,
            mail_from: format!("{LOCAL_PART}@{own}"),
            pending: vec![format!("{LOCAL_PART}@{}", normalize_domain(dest))],
            received_at: crate::now_secs(),
            attempts: 0,
            deliveries: 0,
            requiretls: false,
        };
        let sh = shared.clone();
        let queued = tokio::task::spawn_blocking(move || sh.enqueue(&env, &message)).await;
        if let Ok(Err(e)) = queued {
            tracing::error!("{}: cannot queue a cover message: {e}", shared.cfg.system);
        }
    }
}

enum Sizes {
    Fixed(u64),
    LogNormal(LogNormal<f64>),
}

impl Sizes {
    fn draw(&self, rng: &mut impl Rng) -> u64 {
        match self {
            Sizes::Fixed(n) => *n,
            // As the traffic generator clamps real messages' sizes.
            Sizes::LogNormal(d) => d.sample(rng).clamp(COVER_MIN_BYTES as f64, COVER_MAX_BYTES as f64) as u64,
        }
    }
}

/// A cover message of exactly `size` bytes (at least its header section): an ordinary-looking
/// text message whose body is random letters in 76-character lines, so its TLS records are as
/// long as a real message's of that size.
pub fn build(from_domain: &str, to_domain: &str, message_id: &str, size: u64, rng: &mut impl Rng) -> Vec<u8> {
    let date =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
    let mut m = format!(
        "From: <{LOCAL_PART}@{from_domain}>\r\nTo: <{LOCAL_PART}@{to_domain}>\r\nDate: {date}\r\n\
         Message-ID: <{message_id}>\r\nSubject: cover\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    let size = size.max(m.len() as u64 + 2) as usize;
    while m.len() < size {
        // A line of up to 76 letters and its CRLF; the last line is cut to fit exactly (at
        // least one letter: a bare CRLF line keeps the size but is never a lone ".").
        let left = size - m.len();
        let letters = left.saturating_sub(2).clamp(1, 76);
        if left < 3 {
            // Too little for a letter and CRLF: pad the previous line instead.
            let at = m.len() - 2;
            for _ in 0..left {
                m.insert(at, b'x');
            }
            break;
        }
        m.extend((0..letters).map(|_| b'a' + rng.random_range(0..26u8)));
        m.extend_from_slice(b"\r\n");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_the_generator_cannot_run_say_why() {
        let good =
            CoverConfig { rate: 1.0, sizes: CoverSizes::Fixed(1000), destinations: vec!["b.example".into()], seed: 1 };
        good.check().expect("good");
        let e = CoverConfig { rate: 0.0, ..good.clone() }.check().expect_err("rate");
        assert_eq!(e, CoverError::Rate { rate: 0.0 });
        assert_eq!(e.to_string(), "cover rate 0: above 0, at most 1000");
        let e = CoverConfig { destinations: Vec::new(), ..good.clone() }.check().expect_err("nowhere");
        assert_eq!(e, CoverError::NoDestinations);
        let e = CoverConfig { sizes: CoverSizes::Fixed(10), ..good.clone() }.check().expect_err("size");
        assert!(e.to_string().starts_with("cover size 10: from 300 to "), "{e}");
        let e =
            CoverConfig { sizes: CoverSizes::LogNormal { median: 0.0, sigma: 1.0 }, ..good }.check().expect_err("ln");
        assert_eq!(e.to_string(), "cover sizes: median 0 must be above 0 and sigma 1 not negative");
        assert_eq!(
            crate::RelayError::from(e).to_string(),
            "configuration: cover sizes: median 0 must be above 0 and sigma 1 not negative"
        );
    }

    #[test]
    fn cover_addresses() {
        assert!(is_cover_address("smtplab-cover@b.example"));
        assert!(is_cover_address("SMTPLAB-Cover@b.example"));
        assert!(!is_cover_address("smtplab-cover"));
        assert!(!is_cover_address("alice@b.example"));
        assert!(is_cover(&["smtplab-cover@b.example".into()]));
        assert!(!is_cover(&["smtplab-cover@b.example".into(), "alice@b.example".into()]));
        assert!(!is_cover(&[]));
    }

    /// Exactly the size asked for, every size from the header's length up; CRLF line ends only;
    /// no line longer than RFC 5322's 78 characters; the same seed gives the same body.
    #[test]
    fn messages_have_the_size_asked_for() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        for size in (300..700).chain([4096, 100_000]) {
            let m = build("a.example", "b.example", "id@x", size, &mut rng);
            assert_eq!(m.len() as u64, size, "size {size}");
            assert!(m.ends_with(b"\r\n"));
            let text = String::from_utf8(m).expect("ascii");
            assert!(text.split("\r\n").all(|l| l.len() <= 78 && !l.contains('\n') && !l.contains('\r')), "{size}");
        }
        let body = |seed| {
            let m = build("a.example", "b.example", "id@x", 2000, &mut rand_chacha::ChaCha20Rng::seed_from_u64(seed));
            let at = m.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
            m[at..].to_vec()
        };
        assert_eq!(body(5), body(5));
    }
}
