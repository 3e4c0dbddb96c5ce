//! The worker pool: claims queued runs from the store and executes them.
//!
//! Claims are leases: a worker renews its lease while a run executes; a run
//! whose lease expires (its worker died) is released by whichever worker
//! notices first — a queued run goes back to the queue, a started one ends
//! `failed`, since its sandbox died with the worker. A worker restarting
//! under the same id first fails the runs it held ("orchestrator restarted").
//! The store's claim is atomic, so no run is ever executed twice.
//!
//! Stopping (SIGTERM, for an upgrade) drains: the pool stops claiming, lets
//! its runs finish for up to [`WorkerConfig::drain_grace`], then stops those
//! still going in their sandboxes and gives them back to the queue
//! ([`Store::release_claim`], then [`Store::unclaim`]) with
//! [`DRAIN_RELEASE_REASON`], so another node claims them at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use errand_runner::{RunObserver, Runner};
use errand_store::{QueueLimits, Store};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::Metrics;

/// How a worker pool claims and runs queued runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Stable across restarts of the same worker (host and data directory).
    pub id: String,
    /// Runs this process executes at once.
    pub slots: usize,
    /// How long a claim lasts without renewal; a run whose lease expires is released.
    pub lease: Duration,
    /// How many runs may be claimed at once, in all and per repository.
    pub limits: QueueLimits,
    /// How often the queue is polled when idle.
    pub poll: Duration,
    /// How long a stopping pool lets its runs finish before it stops them
    /// and gives them back to the queue.
    pub drain_grace: Duration,
}

/// The reason recorded when a draining worker gives a run back to the queue.
pub const DRAIN_RELEASE_REASON: &str =
    "released: node draining (errand stopped); the run starts again on the next worker";

/// Workers that claim queued runs from the store and execute them.
pub struct WorkerPool {
    /// Where the queue is.
    pub store: Arc<dyn Store>,
    /// Executes each claimed run that names no other sandbox backend.
    pub runner: Arc<Runner>,
    /// The same, for each other backend a run may ask for (`sandbox.choices`).
    pub runners: std::collections::BTreeMap<String, Arc<Runner>>,
    /// The pool's settings.
    pub config: WorkerConfig,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl WorkerPool {
    /// The runner of `rec`'s sandbox backend, or why this worker has none.
    fn runner_for(&self, rec: &errand_core::RunRecord) -> Result<Arc<Runner>, String> {
        match rec.spec.sandbox.as_deref() {
            None => Ok(self.runner.clone()),
            Some(name) if name == self.runner.sandbox.name() => Ok(self.runner.clone()),
            Some(name) => self.runners.get(name).cloned().ok_or_else(|| {
                format!(
                    "the run asks for the {name} sandbox, which worker {} does not offer \
                     (its sandbox.backend is {}; sandbox.choices names the others)",
                    self.config.id,
                    self.runner.sandbox.name()
                )
            }),
        }
    }

    /// Runs until `shutdown` is cancelled; then stops claiming, lets its runs
    /// finish for up to [`WorkerConfig::drain_grace`] and gives back the rest.
    pub async fn run(self, shutdown: CancellationToken) {
        let cfg = &self.config;
        match self
            .store
            .release_worker(
                &cfg.id,
                "orchestrator restarted: the run's sandbox was lost when errand stopped",
            )
            .await
        {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(worker = %cfg.id, "released {} run(s) left from a previous start", ids.len());
                settle(
                    self.store.as_ref(),
                    &self.runner.paths,
                    self.runner.observer.as_deref(),
                    &ids,
                )
                .await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!("releasing this worker's old runs failed: {e}"),
        }
        let mut tasks = tokio::task::JoinSet::new();
        // Cancelled when the grace period of a drain ends.
        let release = CancellationToken::new();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            match self.store.release_expired(chrono::Utc::now()).await {
                Ok(released) if !released.is_empty() => {
                    let ids: Vec<_> = released.iter().map(|(id, _)| *id).collect();
                    settle(
                        self.store.as_ref(),
                        &self.runner.paths,
                        self.runner.observer.as_deref(),
                        &ids,
                    )
                    .await;
                }
                Ok(_) => {}
                Err(e) => tracing::error!("releasing expired leases failed: {e}"),
            }
            let mut claimed_any = false;
            while tasks.len() < cfg.slots {
                match self.store.claim_next(&cfg.id, cfg.lease, &cfg.limits).await {
                    Ok(Some(rec)) => {
                        claimed_any = true;
                        let runner = match self.runner_for(&rec) {
                            Ok(r) => r,
                            Err(why) => {
                                refuse(self.store.as_ref(), rec.id, &why).await;
                                continue;
                            }
                        };
                        // Every log line of the run carries its id and the worker's.
                        let span = tracing::info_span!("run", run = %rec.id, worker = %cfg.id);
                        tasks.spawn(
                            execute(
                                self.store.clone(),
                                runner,
                                cfg.clone(),
                                self.metrics.clone(),
                                rec.id,
                                release.clone(),
                            )
                            .instrument(span),
                        );
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("claiming a run failed: {e}");
                        break;
                    }
                }
            }
            if !claimed_any {
                tokio::select! {
                    _ = tokio::time::sleep(cfg.poll) => {}
                    _ = shutdown.cancelled() => break,
                    _ = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
        }
        drain(&mut tasks, cfg, &release).await;
    }
}

/// Waits for the pool's runs, for up to the grace period; then has those
/// still going given back to the queue, and waits for them to stop.
async fn drain(
    tasks: &mut tokio::task::JoinSet<()>,
    cfg: &WorkerConfig,
    release: &CancellationToken,
) {
    if !tasks.is_empty() {
        tracing::info!(
            runs = tasks.len(),
            grace_secs = cfg.drain_grace.as_secs(),
            "draining: no new runs; waiting for those running"
        );
    }
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(cfg.drain_grace, all_done)
        .await
        .is_err()
    {
        tracing::warn!(
            runs = tasks.len(),
            "drain grace period over: giving the remaining runs back to the queue"
        );
        release.cancel();
        while tasks.join_next().await.is_some() {}
    }
}

/// Brings the event log of runs ended by a release up to date: events the
/// dead process wrote to its local log but not yet to the store are copied
/// over, then the final state is appended to both, with one sequence number.
/// Then the observer (Slack card and thread, GitHub comment) hears how each
/// ended: nobody else will tell it, the process that ran the run is gone.
async fn settle(
    store: &dyn Store,
    paths: &errand_runner::Paths,
    observer: Option<&dyn RunObserver>,
    ids: &[errand_core::RunId],
) {
    for &id in ids {
        let Ok(rec) = store.get_run(id).await else {
            continue;
        };
        if !rec.state.is_terminal() {
            continue; // a queued run put back in the queue
        }
        let file = paths.events(id);
        let stored = store.last_event_seq(id).await.unwrap_or(0);
        let missing: Vec<errand_core::Event> = errand_store::read_events(&file)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.seq > stored)
            .collect();
        if !missing.is_empty() {
            if let Err(e) = store.append_events(id, &missing).await {
                tracing::error!(run = %id, "recovering {} events failed: {e}", missing.len());
            }
        }
        let kind = errand_core::EventKind::State {
            state: rec.state,
            reason: rec.reason.clone(),
        };
        let event = if file.exists() {
            errand_store::EventLog::open(&file)
                .and_then(|mut log| log.append(errand_core::EventSource::Errand, None, kind))
        } else {
            let seq = store.last_event_seq(id).await.unwrap_or(0) + 1;
            Ok(errand_core::Event {
                seq,
                ts: chrono::Utc::now(),
                source: errand_core::EventSource::Errand,
                raw_line: None,
                kind,
            })
        };
        match event {
            Ok(ev) => {
                if let Err(e) = store.append_events(id, &[ev]).await {
                    tracing::error!(run = %id, "recording the final state failed: {e}");
                }
            }
            Err(e) => tracing::error!(run = %id, "recording the final state failed: {e}"),
        }
        if let Some(o) = observer {
            match store.get_run(id).await {
                Ok(done) => o.state_changed(&done),
                Err(e) => tracing::error!(run = %id, "reading the released run failed: {e}"),
            }
        }
    }
}

/// Ends a claimed run this worker cannot execute as failed, with the reason
/// (in its record and its trace, so its streams end).
async fn refuse(store: &dyn Store, id: errand_core::RunId, why: &str) {
    tracing::error!(run = %id, "{why}");
    let r = match store
        .transition(id, errand_core::RunState::Failed, Some(why))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(run = %id, "recording the refusal failed: {e}");
            return;
        }
    };
    let seq = store.last_event_seq(id).await.unwrap_or(0) + 1;
    let ev = errand_core::Event {
        seq,
        ts: chrono::Utc::now(),
        source: errand_core::EventSource::Errand,
        raw_line: None,
        kind: errand_core::EventKind::State {
            state: errand_core::RunState::Failed,
            reason: r.reason.clone(),
        },
    };
    if let Err(e) = store.append_events(id, &[ev]).await {
        tracing::error!(run = %id, "recording the refusal's event failed: {e}");
    }
}

async fn execute(
    store: Arc<dyn Store>,
    runner: Arc<Runner>,
    cfg: WorkerConfig,
    metrics: Arc<Metrics>,
    id: errand_core::RunId,
    release: CancellationToken,
) {
    // A run cancelled while queued was claimed anyway: nothing to do.
    if let Ok(r) = store.get_run(id).await {
        if r.state.is_terminal() {
            return;
        }
    }
    metrics.runs_started.fetch_add(1, Ordering::Relaxed);
    let lost = CancellationToken::new();
    let cancel = CancellationToken::new();
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Keep the lease while the run executes; stop the run if the lease is
    // lost, or give it back when the pool's drain ends.
    let renew = {
        let store = store.clone();
        let cfg = cfg.clone();
        let lost = lost.clone();
        let cancel = cancel.clone();
        let released = released.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(cfg.lease / 3) => {}
                    _ = release.cancelled() => {
                        give_back(store.as_ref(), id, &cfg.id, &released).await;
                        cancel.cancel();
                        return;
                    }
                }
                match store.renew_lease(id, &cfg.id, cfg.lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(run = %id, "lost the lease on this run; stopping it");
                        lost.cancel();
                        cancel.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(run = %id, "renewing the lease failed: {e}"),
                }
            }
        })
    };
    tracing::info!("starting");
    let started = std::time::Instant::now();
    match runner.execute(id, cancel, None, None).await {
        Ok(rec) => {
            tracing::info!(state = %rec.state, reason = rec.reason.as_deref().unwrap_or(""), "finished");
            metrics.runs_finished.fetch_add(1, Ordering::Relaxed);
            metrics
                .run_millis
                .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        Err(e) => tracing::error!("the run could not be executed: {e}"),
    }
    renew.abort();
    if released.load(Ordering::SeqCst) {
        // Stopped in its sandbox: now any worker may claim it.
        match store.unclaim(id, &cfg.id).await {
            Ok(true) => tracing::info!("given back to the queue"),
            Ok(false) => tracing::warn!("the released run was no longer held by this worker"),
            Err(e) => {
                tracing::error!("unclaiming the released run failed (its lease will expire): {e}")
            }
        }
    }
}

/// Puts the run back to `queued` while this worker still holds it, before it
/// is stopped, so the runner records no end for it.
async fn give_back(
    store: &dyn Store,
    id: errand_core::RunId,
    worker: &str,
    released: &std::sync::atomic::AtomicBool,
) {
    match store.release_claim(id, worker, DRAIN_RELEASE_REASON).await {
        Ok(true) => released.store(true, Ordering::SeqCst),
        Ok(false) => tracing::info!(run = %id, "not released: the run ended or is no longer held"),
        Err(e) => {
            tracing::error!(run = %id, "releasing the run failed; it is stopped and ends cancelled: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use errand_core::{RunRecord, RunSpec, RunState};
    use errand_store::SqliteStore;

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<RunRecord>>);

    impl RunObserver for Seen {
        fn state_changed(&self, run: &RunRecord) {
            self.0.lock().unwrap().push(run.clone());
        }
    }

    #[tokio::test]
    async fn a_released_run_that_ended_is_told_to_the_observer_once_a_requeued_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let paths = errand_runner::Paths::at(dir.path());
        let store = SqliteStore::in_memory().await.unwrap();
        for prompt in ["hang", "wait"] {
            store
                .create_run(
                    errand_core::RunId::new(),
                    &RunSpec::new(prompt, "synthetic"),
                )
                .await
                .unwrap();
        }
        // Both claimed by a worker that then dies; one had started.
        let lease = Duration::from_secs(1);
        let limits = QueueLimits::default();
        let claim = || async {
            let rec = store.claim_next("dead", lease, &limits).await.unwrap();
            rec.expect("a queued run").id
        };
        let running = claim().await;
        for to in [RunState::Preparing, RunState::Running] {
            store.transition(running, to, None).await.unwrap();
        }
        let queued = claim().await;

        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        let released = store.release_expired(later).await.unwrap();
        assert_eq!(released.len(), 2, "{released:?}");
        let ids: Vec<_> = released.iter().map(|(id, _)| *id).collect();
        let seen = Seen::default();
        settle(&store, &paths, Some(&seen), &ids).await;

        let told = seen.0.lock().unwrap().clone();
        assert_eq!(told.len(), 1, "{told:#?}");
        assert_eq!(told[0].id, running);
        assert_eq!(told[0].state, RunState::Failed);
        assert_eq!(
            told[0].reason.as_deref(),
            Some(errand_store::LEASE_EXPIRED_REASON)
        );
        assert!(told[0].finished_at.is_some());
        // The observer heard it after the final state was in the event log.
        let stored = store.last_event_seq(running).await.unwrap();
        assert_eq!(stored, 1);
        assert_eq!(store.get_run(queued).await.unwrap().state, RunState::Queued);
    }
}
