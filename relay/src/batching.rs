//! Batching, a remailer-style countermeasure against timing analysis: outbound mail is held per
//! next hop (destination domain) and released together when `batch_size` deliveries wait or
//! `batch_interval` seconds have passed since the first of them began to wait, whichever comes
//! first. An eavesdropper then sees a destination's mail leave in bursts, not as it arrives.
//! Either trigger is off at 0; both off, nothing is held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

pub(crate) struct Batcher {
    size: usize,
    interval: Duration,
    held: Arc<Mutex<HashMap<String, Batch>>>,
}

/// The deliveries waiting for one destination.
struct Batch {
    /// Told to go when the batch is released.
    waiters: Vec<oneshot::Sender<()>>,
    /// Tells a batch from the next one of the same destination, so a timer started for a batch
    /// already released by size releases nothing of the next.
    generation: u64,
}

impl Batcher {
    pub fn new(size: usize, interval: Duration) -> Self {
        Self { size, interval, held: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Waits until this delivery's batch for `dest` is released (at once when batching is off).
    pub async fn hold(&self, dest: &str) {
        if self.size == 0 && self.interval.is_zero() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let start_timer = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let batch = held.entry(dest.to_string()).or_insert(Batch { waiters: Vec::new(), generation: 0 });
            batch.waiters.push(tx);
            if self.size > 0 && batch.waiters.len() >= self.size {
                release(batch);
                None
            } else if batch.waiters.len() == 1 && !self.interval.is_zero() {
                Some(batch.generation)
            } else {
                None
            }
        };
        if let Some(generation) = start_timer {
            let (held, dest, interval) = (self.held.clone(), dest.to_string(), self.interval);
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
        // A sender dropped without a word (cannot happen: release sends) also lets it go.
        let _ = rx.await;
    }
}

fn release(batch: &mut Batch) {
    for w in batch.waiters.drain(..) {
        let _ = w.send(());
    }
    batch.generation += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
    }

    /// Size 3, no interval: two deliveries wait; the third releases all three; a fourth waits
    /// again for its own batch.
    #[test]
    fn a_batch_goes_when_it_is_full() {
        rt().block_on(async {
            let b = Arc::new(Batcher::new(3, Duration::ZERO));
            let gone = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let (b, gone) = (b.clone(), gone.clone());
                tasks.push(tokio::spawn(async move {
                    b.hold("d").await;
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
            Batcher::new(0, Duration::ZERO).hold("d").await;
        });
    }

    /// With a large size, a lone delivery goes when the interval has passed, not before (a lower
    /// bound: a loaded machine can only make the wait longer).
    #[test]
    fn a_batch_goes_when_its_interval_ends() {
        rt().block_on(async {
            let b = Batcher::new(100, Duration::from_millis(200));
            let t0 = tokio::time::Instant::now();
            b.hold("d").await;
            assert!(t0.elapsed() >= Duration::from_millis(200));
        });
    }
}
