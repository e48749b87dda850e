//! What keeps a request from starving the others: the memory budget of buffered request
//! bodies ([`BodyBudget`]: a byte semaphore shared by every request, refused fast when
//! spent, never queued) and the bounded blocking pool CPU-heavy work runs on
//! ([`Offload`]: tokenizer counts and parsing large bodies, at most N at once, never on
//! an async runtime thread, so a health probe is never stuck behind them).

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Bodies at least this large are parsed on the blocking pool; smaller ones take
/// microseconds and are parsed in place.
pub(crate) const LARGE_BODY: usize = 256 * 1024;

/// The default number of heavy tasks run at once: one per core.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).max(1)
}

/// The budget was spent: the request is refused (503 `overloaded`), not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffered request bodies are at their memory budget")]
pub(crate) struct BudgetSpent;

/// The memory all buffered request bodies may hold at once, in bytes.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
}

/// A share of the [`BodyBudget`], given back when the last clone is dropped (when the
/// request, and a stream holding its prompt, ends).
#[derive(Debug, Clone)]
pub(crate) struct BodyLease {
    _permit: Arc<OwnedSemaphorePermit>,
}

/// A share being taken while a body is read: grows frame by frame.
#[derive(Debug)]
pub(crate) struct Taking {
    permit: OwnedSemaphorePermit,
    budget: Arc<Semaphore>,
}

impl BodyBudget {
    /// A budget of `bytes` (capped at what a semaphore can count).
    pub(crate) fn new(bytes: usize) -> Self {
        BodyBudget { bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))) }
    }

    /// Takes `bytes` of the budget now, or refuses: never waits.
    pub(crate) fn take(&self, bytes: u64) -> Result<Taking, BudgetSpent> {
        let n = u32::try_from(bytes).map_err(|_| BudgetSpent)?;
        let permit = self.bytes.clone().try_acquire_many_owned(n).map_err(|_| BudgetSpent)?;
        Ok(Taking { permit, budget: self.bytes.clone() })
    }

    /// Bytes left in the budget now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

impl Taking {
    /// Bytes taken so far.
    pub(crate) fn taken(&self) -> usize {
        self.permit.num_permits()
    }

    /// Takes `more` bytes on top, or refuses: never waits.
    pub(crate) fn grow(&mut self, more: usize) -> Result<(), BudgetSpent> {
        let n = u32::try_from(more).map_err(|_| BudgetSpent)?;
        let extra = self.budget.clone().try_acquire_many_owned(n).map_err(|_| BudgetSpent)?;
        self.permit.merge(extra);
        Ok(())
    }

    /// The share, held until the request ends.
    pub(crate) fn lease(self) -> BodyLease {
        BodyLease { _permit: Arc::new(self.permit) }
    }
}

/// Heavy work failed on the blocking pool (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("heavy work on the blocking pool failed")]
pub(crate) struct OffloadError(#[source] tokio::task::JoinError);

/// The bounded blocking pool: at most N heavy tasks run at once on tokio's blocking
/// threads; more wait for a turn (in an async task, never blocking a runtime thread).
#[derive(Debug, Clone)]
pub(crate) struct Offload {
    turns: Arc<Semaphore>,
}

impl Offload {
    /// A pool running at most `threads` tasks at once (at least one).
    pub(crate) fn new(threads: usize) -> Self {
        Offload { turns: Arc::new(Semaphore::new(threads.clamp(1, Semaphore::MAX_PERMITS))) }
    }

    /// Runs `f` on the blocking pool when its turn comes, and returns its result.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, OffloadError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // The semaphore is never closed; a closed one would only mean no bound.
        let turn = self.turns.clone().acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            // Held by the work itself: the turn ends when the work does, even if the
            // task awaiting it is dropped.
            let _turn = turn;
            f()
        })
        .await
        .map_err(OffloadError)
    }

    /// Starts `f` on the blocking pool from code that cannot await (a body's poll, a
    /// drop) and returns its handle; outside a runtime (process teardown) `f` runs here
    /// and then, and there is nothing to wait for.
    pub(crate) fn start<F>(&self, f: F) -> Option<JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let this = self.clone();
                Some(rt.spawn(async move {
                    if let Err(e) = this.run(f).await {
                        tracing::error!(error = %e, "heavy work failed");
                    }
                }))
            }
            Err(_) => {
                f();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_budget_refuses_at_once_and_is_given_back_when_the_lease_ends() {
        let budget = BodyBudget::new(100);
        let a = budget.take(60).unwrap().lease();
        assert_eq!(budget.take(41).unwrap_err(), BudgetSpent, "over the budget: refused, not queued");
        let mut b = budget.take(30).unwrap();
        assert_eq!(b.grow(11).unwrap_err(), BudgetSpent);
        b.grow(10).unwrap();
        assert_eq!(b.taken(), 40);
        let b = b.lease();
        let shared = b.clone();
        assert_eq!(budget.available(), 0);
        drop(a);
        drop(b);
        assert_eq!(budget.available(), 60, "a clone still holds its share");
        drop(shared);
        assert_eq!(budget.available(), 100);
        assert!(budget.take(u64::MAX).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn heavy_work_runs_off_the_runtime_and_at_most_n_at_once() {
        let pool = Offload::new(1);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = running.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, SeqCst);
                    std::thread::current().name().map(str::to_owned)
                })
                .await
                .unwrap()
            }));
        }
        // The one runtime thread stays free while the work runs.
        tokio::task::yield_now().await;
        for t in tasks {
            let _ = t.await.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        let done = pool.start(|| {}).unwrap();
        done.await.unwrap();
    }
}
