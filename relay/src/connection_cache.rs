//! Outbound connection reuse with the semantics of Postfix's SMTP client connection cache
//! (CONNECTION_CACHE_README, postconf(5) `smtp_connection_cache_*`, `smtp_connection_reuse_*`):
//!
//! - After a delivery the session is offered back ([`ConnectionCache::checkin`]). It is kept
//!   when reuse is `always`, or `on-demand` and another delivery to the same destination is
//!   waiting (Postfix caches "while a destination has a high volume of mail in the active
//!   queue"), and only while its reuse count and age are within their limits.
//! - A kept session is closed after `connection_cache_time_limit` unused.
//! - While reuse is on, at most `destination_concurrency_limit` deliveries to one destination
//!   run at once; the others wait for a place and take a cached session when one is there.
//!
//! The cache is generic over the session so that it holds no SMTP code: the delivery code
//! says how a session is closed (QUIT, its record written) through [`CachedSession`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{ConnectionReuse, DeliveryOptions};

/// What the cache needs to know of a session.
pub(crate) trait CachedSession: Send + 'static {
    /// When the connection was opened (the reuse time limit counts from here, as Postfix's
    /// does: connect, greeting and EHLO included).
    fn opened(&self) -> Instant;
    /// Deliveries made over it so far.
    fn uses(&self) -> u32;
    /// Ends the session for good: QUIT, close, and its record written.
    fn close(self) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// A place among a destination's concurrent deliveries, held for one delivery. Give the
/// session back ([`ConnectionCache::checkin`]) before dropping it, so that a delivery waiting
/// for the place finds the session.
pub(crate) struct Lease {
    _permit: Option<OwnedSemaphorePermit>,
}

pub(crate) struct ConnectionCache<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for ConnectionCache<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner<S> {
    opts: DeliveryOptions,
    state: Mutex<State<S>>,
}

struct State<S> {
    /// Unused sessions per destination, most recently used last.
    idle: HashMap<String, Vec<(u64, S)>>,
    places: HashMap<String, Arc<Semaphore>>,
    /// Deliveries per destination waiting for a place: the on-demand backlog.
    waiting: HashMap<String, usize>,
    next_id: u64,
    /// After [`ConnectionCache::close_all`]: nothing more is kept.
    closed: bool,
}

impl<S: CachedSession> ConnectionCache<S> {
    pub fn new(opts: DeliveryOptions) -> Self {
        let state =
            State { idle: HashMap::new(), places: HashMap::new(), waiting: HashMap::new(), next_id: 0, closed: false };
        Self { inner: Arc::new(Inner { opts, state: Mutex::new(state) }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<S>> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enabled(&self) -> bool {
        self.inner.opts.connection_reuse != ConnectionReuse::Off
    }

    /// Waits for a place among `dest`'s deliveries (only while reuse is on), then takes its
    /// most recently used idle session, if one is there and still young enough to reuse.
    pub async fn checkout(&self, dest: &str) -> (Lease, Option<S>) {
        if !self.enabled() {
            return (Lease { _permit: None }, None);
        }
        let places = {
            let mut st = self.state();
            *st.waiting.entry(dest.to_string()).or_default() += 1;
            let limit = self.inner.opts.destination_concurrency_limit.max(1);
            st.places.entry(dest.to_string()).or_insert_with(|| Arc::new(Semaphore::new(limit))).clone()
        };
        // The semaphore is never closed, so acquiring fails only if it were; deliver anyway.
        let permit = places.acquire_owned().await.ok();
        let (taken, too_old) = {
            let mut st = self.state();
            if let Some(n) = st.waiting.get_mut(dest) {
                *n = n.saturating_sub(1);
            }
            let mut too_old = Vec::new();
            let mut taken = None;
            if let Some(list) = st.idle.get_mut(dest) {
                while let Some((_, s)) = list.pop() {
                    if s.opened().elapsed() < self.inner.opts.reuse_time_limit() {
                        taken = Some(s);
                        break;
                    }
                    too_old.push(s);
                }
            }
            (taken, too_old)
        };
        for s in too_old {
            s.close().await;
        }
        (Lease { _permit: permit }, taken)
    }

    /// Offers `session` back after a delivery over it. Returns it when it is not to be kept
    /// (the caller closes it); otherwise it stays, and is closed after the idle time limit.
    pub fn checkin(&self, dest: &str, session: S) -> Option<S> {
        let opts = &self.inner.opts;
        let within_limits = (opts.connection_reuse_count_limit == 0
            || session.uses() <= opts.connection_reuse_count_limit)
            && session.opened().elapsed() < opts.reuse_time_limit();
        let mut st = self.state();
        let wanted = match opts.connection_reuse {
            ConnectionReuse::Off => false,
            ConnectionReuse::Always => true,
            ConnectionReuse::OnDemand => st.waiting.get(dest).copied().unwrap_or(0) > 0,
        };
        if st.closed || !wanted || !within_limits {
            return Some(session);
        }
        st.next_id += 1;
        let id = st.next_id;
        st.idle.entry(dest.to_string()).or_default().push((id, session));
        drop(st);
        let (cache, dest, limit) = (self.clone(), dest.to_string(), opts.cache_time_limit());
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            if let Some(s) = cache.take(&dest, id) {
                s.close().await;
            }
        });
        None
    }

    /// The idle session `id` of `dest`, if it is still unused.
    fn take(&self, dest: &str, id: u64) -> Option<S> {
        let mut st = self.state();
        let list = st.idle.get_mut(dest)?;
        let at = list.iter().position(|(i, _)| *i == id)?;
        Some(list.remove(at).1)
    }

    /// Closes every idle session (their records are written) and keeps none from now on: a
    /// relay shutting down says QUIT rather than leave its peers to time out.
    pub async fn close_all(&self) {
        let all: Vec<S> = {
            let mut st = self.state();
            st.closed = true;
            st.idle.drain().flat_map(|(_, list)| list.into_iter().map(|(_, s)| s)).collect()
        };
        for s in all {
            s.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A session that only counts its closes.
    struct Fake {
        opened: Instant,
        uses: u32,
        closed: Arc<AtomicUsize>,
    }

    impl CachedSession for Fake {
        fn opened(&self) -> Instant {
            self.opened
        }
        fn uses(&self) -> u32 {
            self.uses
        }
        fn close(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            self.closed.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    fn opts(mode: ConnectionReuse) -> DeliveryOptions {
        DeliveryOptions { connection_reuse: mode, connection_cache_time_limit: 3600.0, ..Default::default() }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
    }

    /// postconf(5): "With a reuse count limit of N, a connection is used up to N+1 times."
    #[test]
    fn reuse_count_limit_of_n_allows_n_plus_one_uses() {
        rt().block_on(async {
            let closed = Arc::new(AtomicUsize::new(0));
            let cache = ConnectionCache::new(DeliveryOptions {
                connection_reuse_count_limit: 3,
                ..opts(ConnectionReuse::Always)
            });
            for uses in 1..=3 {
                let s = Fake { opened: Instant::now(), uses, closed: closed.clone() };
                assert!(cache.checkin("d", s).is_none(), "kept after use {uses}");
                let (_lease, s) = cache.checkout("d").await;
                assert!(s.is_some());
            }
            let s = Fake { opened: Instant::now(), uses: 4, closed: closed.clone() };
            assert!(cache.checkin("d", s).is_some(), "the fourth use was the last");
        });
    }

    #[test]
    fn off_keeps_nothing_and_on_demand_keeps_only_for_a_waiting_delivery() {
        rt().block_on(async {
            let closed = Arc::new(AtomicUsize::new(0));
            let fake = || Fake { opened: Instant::now(), uses: 1, closed: closed.clone() };
            let off = ConnectionCache::new(opts(ConnectionReuse::Off));
            assert!(off.checkin("d", fake()).is_some());

            let cache = ConnectionCache::new(DeliveryOptions {
                destination_concurrency_limit: 1,
                ..opts(ConnectionReuse::OnDemand)
            });
            let (lease, none) = cache.checkout("d").await;
            assert!(none.is_none());
            assert!(cache.checkin("d", fake()).is_some(), "nobody waits: not kept");
            // A second delivery waits for the one place; the first's session is then kept for it.
            let waiter = {
                let cache = cache.clone();
                tokio::spawn(async move { cache.checkout("d").await.1.is_some() })
            };
            while cache.state().waiting.get("d").copied().unwrap_or(0) == 0 {
                tokio::task::yield_now().await;
            }
            assert!(cache.checkin("d", fake()).is_none(), "a delivery waits: kept");
            drop(lease);
            assert!(waiter.await.expect("task"), "the waiting delivery got the session");
        });
    }

    #[test]
    fn sessions_too_old_are_closed_not_reused_and_close_all_empties_the_cache() {
        rt().block_on(async {
            let closed = Arc::new(AtomicUsize::new(0));
            let cache = ConnectionCache::new(DeliveryOptions {
                connection_reuse_time_limit: 1.0,
                ..opts(ConnectionReuse::Always)
            });
            let old = Instant::now().checked_sub(Duration::from_secs(2)).expect("clock");
            assert!(cache.checkin("d", Fake { opened: old, uses: 1, closed: closed.clone() }).is_some());
            assert!(cache.checkin("d", Fake { opened: Instant::now(), uses: 1, closed: closed.clone() }).is_none());
            assert!(cache.checkin("e", Fake { opened: Instant::now(), uses: 1, closed: closed.clone() }).is_none());
            cache.close_all().await;
            assert_eq!(closed.load(Ordering::SeqCst), 2);
            assert!(cache.checkin("d", Fake { opened: Instant::now(), uses: 1, closed: closed.clone() }).is_some());
        });
    }
}
