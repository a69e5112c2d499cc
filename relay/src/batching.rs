//! Batching, a remailer-style countermeasure against timing analysis: outbound mail is held per
//! next hop (destination domain) and released in groups, so an eavesdropper sees a
//! destination's mail leave in bursts, not as it arrives. Two ways to release it:
//!
//! - `threshold` (default): the whole batch goes when `batch_size` deliveries wait or
//!   `batch_interval` seconds have passed since the first of them began to wait, whichever
//!   comes first. Either trigger is off at 0; both off, nothing is held.
//! - `pool`: a timed pool mix (the "timed dynamic pool" of Serjantov and Danezis, the mixing
//!   rule of Mixmaster's pool): every `batch_interval` seconds from the relay's start (a round),
//!   for each destination holding `n` messages, `ceil(pool_fraction × n)` of them go, but never
//!   so many that fewer than `pool_min` stay (none go when `n <= pool_min`); which ones is a
//!   seeded draw ([`pool_round`]). A message held `pool_max_rounds` rounds goes at that round
//!   whatever the draw: nothing waits longer than `pool_max_rounds × batch_interval`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::oneshot;

use crate::config::{BatchMode, DeliveryOptions};

pub(crate) struct Batcher {
    mode: Mode,
    held: Arc<Mutex<HashMap<String, Batch>>>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Off,
    Threshold { size: usize, interval: Duration },
    Pool(PoolParams),
}

/// The knobs of the pool mix, as [`DeliveryOptions`] holds them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolParams {
    pub min: usize,
    pub fraction: f64,
    pub max_rounds: u32,
    pub seed: u64,
}

/// The deliveries waiting for one destination.
struct Batch {
    waiters: Vec<Waiter>,
    /// Tells a batch from the next one of the same destination, so a timer started for a batch
    /// already released by size releases nothing of the next (threshold mode).
    generation: u64,
}

struct Waiter {
    /// Orders the pool before each draw (the Message-ID): the draw then depends on the seed and
    /// on which messages wait, not on the order their delivery tasks happened to arrive in.
    key: String,
    /// Arrival number, to order messages with the same key.
    order: u64,
    /// Rounds this message has been in the pool.
    rounds: u32,
    /// Told to go when the message is released.
    go: oneshot::Sender<()>,
}

impl Batcher {
    /// A batcher for `opts`. In pool mode the rounds start now, so this must run inside a tokio
    /// runtime (`Relay::start` does).
    pub fn new(opts: &DeliveryOptions) -> Self {
        let interval = opts.batch_interval();
        let mode = match opts.batch_mode {
            BatchMode::Pool if !interval.is_zero() => Mode::Pool(PoolParams {
                min: opts.pool_min,
                fraction: opts.pool_fraction,
                max_rounds: opts.pool_max_rounds.max(1),
                seed: opts.seed,
            }),
            BatchMode::None => Mode::Off,
            _ if opts.batch_size == 0 && interval.is_zero() => Mode::Off,
            _ => Mode::Threshold { size: opts.batch_size, interval },
        };
        let held = Arc::new(Mutex::new(HashMap::new()));
        if let Mode::Pool(params) = mode {
            tokio::spawn(rounds(Arc::downgrade(&held), interval, params));
        }
        Self { mode, held }
    }

    /// Waits until this delivery (of the message `key`) is released for `dest`: at once when
    /// batching is off.
    pub async fn hold(&self, dest: &str, key: &str) {
        let (size, interval) = match self.mode {
            Mode::Off => return,
            Mode::Threshold { size, interval } => (size, interval),
            // Pool: the rounds task releases it.
            Mode::Pool(_) => (0, Duration::ZERO),
        };
        let (tx, rx) = oneshot::channel();
        let start_timer = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let batch = held.entry(dest.to_string()).or_insert(Batch { waiters: Vec::new(), generation: 0 });
            let order = batch.waiters.last().map_or(0, |w| w.order + 1);
            batch.waiters.push(Waiter { key: key.to_string(), order, rounds: 0, go: tx });
            if size > 0 && batch.waiters.len() >= size {
                release(batch);
                None
            } else if batch.waiters.len() == 1 && !interval.is_zero() {
                Some(batch.generation)
            } else {
                None
            }
        };
        if let Some(generation) = start_timer {
            let (held, dest) = (self.held.clone(), dest.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(interval).await;
                let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(batch) = held.get_mut(&dest)
                    && batch.generation == generation
                {
                    release(batch);
                }
            });
        }
        // A sender dropped without a word (the batcher went away) also lets it go.
        let _ = rx.await;
    }
}

fn release(batch: &mut Batch) {
    for w in batch.waiters.drain(..) {
        let _ = w.go.send(());
    }
    batch.generation += 1;
}

/// The pool mix's clock: a round every `interval` from now, until the batcher is dropped.
async fn rounds(held: Weak<Mutex<HashMap<String, Batch>>>, interval: Duration, params: PoolParams) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A late round (a busy machine) is late, not doubled: the next follows an interval after it.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 1u64.. {
        tick.tick().await;
        let Some(held) = held.upgrade() else { return };
        let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
        for (dest, batch) in held.iter_mut() {
            batch.waiters.sort_by(|a, b| a.key.cmp(&b.key).then(a.order.cmp(&b.order)));
            for w in &mut batch.waiters {
                w.rounds += 1;
            }
            let forced: Vec<bool> = batch.waiters.iter().map(|w| w.rounds >= params.max_rounds).collect();
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(round_seed(params.seed, dest, round));
            let go = pool_round(&forced, &params, &mut rng);
            let mut kept = Vec::with_capacity(batch.waiters.len());
            for (w, go) in batch.waiters.drain(..).zip(go) {
                if go {
                    let _ = w.go.send(());
                } else {
                    kept.push(w);
                }
            }
            batch.waiters = kept;
        }
        held.retain(|_, b| !b.waiters.is_empty());
    }
}

/// How many of `n` held messages a round sends by the pool rule (before any forced by
/// `pool_max_rounds`): `ceil(fraction × n)`, but at most `n − min`; none when `n <= min`.
pub fn pool_send_count(n: usize, min: usize, fraction: f64) -> usize {
    if n <= min {
        return 0;
    }
    let share = (fraction.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    share.min(n - min)
}

/// One round for one destination's pool, in its sorted order: which messages go. Those
/// `forced` (held `max_rounds` rounds) go; the rest of [`pool_send_count`] is drawn uniformly
/// from the others with `rng`.
pub fn pool_round(forced: &[bool], params: &PoolParams, rng: &mut impl rand::Rng) -> Vec<bool> {
    let mut go = forced.to_vec();
    let want = pool_send_count(forced.len(), params.min, params.fraction);
    let free: Vec<usize> = (0..forced.len()).filter(|&i| !forced[i]).collect();
    let draw = want.saturating_sub(forced.len() - free.len()).min(free.len());
    for i in rand::seq::index::sample(rng, free.len(), draw) {
        go[free[i]] = true;
    }
    go
}

/// The seed of one round's draw for one destination: the relay's seed, the destination and the
/// round number, so the same seed draws the same subsets from the same pools.
fn round_seed(seed: u64, dest: &str, round: u64) -> u64 {
    // FNV-1a of the destination: stable across runs and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dest.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    seed ^ h ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
    }

    fn threshold(size: usize, interval: f64) -> DeliveryOptions {
        DeliveryOptions { batch_size: size, batch_interval: interval, ..Default::default() }
    }

    /// Size 3, no interval: two deliveries wait; the third releases all three; a fourth waits
    /// again for its own batch.
    #[test]
    fn a_batch_goes_when_it_is_full() {
        rt().block_on(async {
            let b = Arc::new(Batcher::new(&threshold(3, 0.0)));
            let gone = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let (b, gone) = (b.clone(), gone.clone());
                tasks.push(tokio::spawn(async move {
                    b.hold("d", "k").await;
                    gone.fetch_add(1, Ordering::SeqCst);
                }));
                tokio::task::yield_now().await;
            }
            for t in tasks.drain(..3) {
                t.await.expect("task");
            }
            assert_eq!(gone.load(Ordering::SeqCst), 3);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(gone.load(Ordering::SeqCst), 3, "the fourth waits for two more");
            // Off means no wait at all.
            Batcher::new(&DeliveryOptions::default()).hold("d", "k").await;
        });
    }

    /// With a large size, a lone delivery goes when the interval has passed, not before (a lower
    /// bound: a loaded machine can only make the wait longer).
    #[test]
    fn a_batch_goes_when_its_interval_ends() {
        rt().block_on(async {
            let b = Batcher::new(&threshold(100, 0.2));
            let t0 = tokio::time::Instant::now();
            b.hold("d", "k").await;
            assert!(t0.elapsed() >= Duration::from_millis(200));
        });
    }

    /// The pool rule worked by hand: 8 held, half go each round, none kept back: 4, then 2 of
    /// the 4 left, then 1 of 2, then the last (ceil(0.5 × 1) = 1).
    #[test]
    fn pool_counts_worked_by_hand() {
        let sends = |mut n: usize, min: usize, f: f64| {
            let mut out = Vec::new();
            while n > min {
                let s = pool_send_count(n, min, f);
                if s == 0 {
                    break;
                }
                out.push(s);
                n -= s;
            }
            out
        };
        assert_eq!(sends(8, 0, 0.5), [4, 2, 1, 1]);
        // Keep 2: 8 → 4 go (ceil 4 ≤ 6), 4 → 2 go (ceil 2 ≤ 2), 2 stay for good (only
        // pool_max_rounds gets them out).
        assert_eq!(sends(8, 2, 0.5), [4, 2]);
        assert_eq!(pool_send_count(2, 2, 0.5), 0);
        // A fraction of 1 with no minimum is a timed flush; 0 sends nothing by the rule.
        assert_eq!(pool_send_count(5, 0, 1.0), 5);
        assert_eq!(pool_send_count(5, 0, 0.0), 0);
        assert_eq!(pool_send_count(5, 1, 1.0), 4);
    }

    /// Forced messages go on top of nothing (count already reached) or count towards the draw.
    #[test]
    fn forced_messages_always_go_and_count() {
        let params = PoolParams { min: 2, fraction: 0.5, max_rounds: 3, seed: 7 };
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        // Two held, both at their last round: the rule sends none (n <= min), both are forced.
        assert_eq!(pool_round(&[true, true], &params, &mut rng), [true, true]);
        // Six held, one forced: ceil(3) = 3 go, the forced one and 2 drawn from the other 5.
        let go = pool_round(&[false, false, true, false, false, false], &params, &mut rng);
        assert!(go[2]);
        assert_eq!(go.iter().filter(|&&g| g).count(), 3);
        // The same seed draws the same subset.
        let draw = |s| pool_round(&[false; 8], &params, &mut rand_chacha::ChaCha20Rng::seed_from_u64(s));
        assert_eq!(draw(round_seed(7, "d", 1)), draw(round_seed(7, "d", 1)));
        assert_eq!(draw(1).iter().filter(|&&g| g).count(), 4);
    }

    /// Pool rounds on the real clock: 8 messages wait; rounds at 0.4 s, 0.8 s, 1.2 s, 1.6 s
    /// release 4, 2, 1 and 1 of them, as worked by hand above. The pool is looked at halfway
    /// between rounds (a round late by up to 0.2 s on a busy machine still passes).
    #[test]
    fn pool_rounds_release_as_the_rule_says() {
        rt().block_on(async {
            let opts = DeliveryOptions {
                batch_mode: BatchMode::Pool,
                batch_interval: 0.4,
                pool_fraction: 0.5,
                seed: 42,
                ..Default::default()
            };
            let b = Arc::new(Batcher::new(&opts));
            let t0 = tokio::time::Instant::now();
            for i in 0..8 {
                let b = b.clone();
                tokio::spawn(async move { b.hold("d", &format!("m{i}")).await });
            }
            let waiting = |b: &Batcher| -> usize {
                let held = b.held.lock().unwrap_or_else(|p| p.into_inner());
                held.values().map(|x| x.waiters.len()).sum()
            };
            let mut seen = Vec::new();
            for k in 0..5u32 {
                tokio::time::sleep_until(t0 + Duration::from_millis(200 + 400 * u64::from(k))).await;
                seen.push(waiting(&b));
            }
            assert_eq!(seen, [8, 4, 2, 1, 0]);
        });
    }

    /// `batch_mode = "none"` holds nothing even with the size and interval that would make
    /// `threshold` hold: each hold returns at once and nothing waits in the batcher.
    #[test]
    fn none_holds_nothing_whatever_size_and_interval_say() {
        rt().block_on(async {
            let opts = DeliveryOptions {
                batch_mode: BatchMode::None,
                batch_size: 4,
                batch_interval: 30.0,
                ..Default::default()
            };
            let b = Batcher::new(&opts);
            for i in 0..3 {
                // A held delivery would wait 30 s; one released at once finishes well within 5.
                tokio::time::timeout(Duration::from_secs(5), b.hold("d", &format!("m{i}")))
                    .await
                    .expect("batch_mode none released the delivery at once");
            }
            assert!(b.held.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
        });
    }
}
