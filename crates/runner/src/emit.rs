//! The run's events on their way out: the emitter writes each one (redacted,
//! within the trace's budget) to the run's event log and a live viewer, and a
//! pump task copies events and raw lines into the store, where every node
//! can read them.

use super::*;

/// Writes events to the run's log and forwards them to a live viewer.
pub(crate) struct Emitter {
    pub(crate) log: EventLog,
    pub(crate) tx: Option<mpsc::UnboundedSender<Event>>,
    pub(crate) redactor: SharedRedactor,
    /// To the task that copies events and raw lines into the store, where
    /// every node (API, viewer, other workers) can read them.
    pub(crate) sink: mpsc::UnboundedSender<Persist>,
    /// Bytes handed to the pump and not yet taken (the harness's output waits above a limit).
    pub(crate) backlog: Arc<std::sync::atomic::AtomicUsize>,
    /// What the trace may still take from the harness (events, raw bytes).
    pub(crate) budget: limits::TraceBudget,
}

/// The run's redactor, shared by the emitter, the task reading the harness's
/// stderr and the token renewer, which adds each renewed token to it before
/// the token can reach the sandbox.
#[derive(Clone, Default)]
pub(crate) struct SharedRedactor(Arc<std::sync::RwLock<Redactor>>);

impl SharedRedactor {
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Redactor> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub(crate) fn set(&self, r: Redactor) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = r;
    }
    pub(crate) fn add(&self, secret: &str) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(secret);
    }
    pub(crate) fn redact(&self, text: &str) -> String {
        self.read().redact(text)
    }
}

/// What the store pump persists.
pub(crate) enum Persist {
    Event(Event),
    Raw(u64, String),
}

impl Persist {
    /// About how much memory it holds while queued.
    pub(crate) fn size(&self) -> usize {
        match self {
            Persist::Event(e) => limits::approx_size(&e.kind),
            Persist::Raw(_, l) => l.len() + 32,
        }
    }
}

/// Copies a run's events and raw lines into the store, in batches, in order.
pub(crate) async fn pump(
    store: Arc<dyn Store>,
    run: RunId,
    mut rx: mpsc::UnboundedReceiver<Persist>,
    backlog: Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let mut events: Vec<Event> = Vec::new();
    let mut raws: Vec<(u64, String)> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 500 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        for p in batch {
            backlog.fetch_sub(p.size(), Ordering::Relaxed);
            match p {
                Persist::Event(e) => events.push(e),
                Persist::Raw(n, line) => raws.push((n, line)),
            }
        }
        // Raw lines precede the events parsed from them; both are one
        // write each, committed with other runs' writes (the store's group
        // commit).
        if !raws.is_empty() {
            if store.append_raw_lines(run, &raws).await.is_err() {
                // One bad line loses only itself.
                for (n, line) in &raws {
                    if let Err(e) = store.append_raw(run, *n, line).await {
                        tracing::error!(run = %run, "storing raw line {n} failed: {e}");
                    }
                }
            }
            raws.clear();
        }
        if !events.is_empty() {
            let n = events.len() as u64;
            if let Err(e) = store.append_events(run, &events).await {
                tracing::error!(run = %run, "storing {} events failed: {e}", events.len());
            } else {
                EVENTS_STORED.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            events.clear();
        }
    }
}

impl Emitter {
    pub(crate) fn emit(
        &mut self,
        source: EventSource,
        raw_line: Option<u64>,
        kind: EventKind,
    ) -> Result<(), StoreError> {
        // The agent decides how much the harness prints: its share of the
        // trace is capped in count and size, and the cut is an event itself.
        let kind = if source == EventSource::Harness {
            match self.budget.take_event() {
                limits::Take::Yes => limits::cap_strings(kind, MAX_EVENT_STRING),
                limits::Take::LastOne(warning) => {
                    self.append(EventSource::Errand, None, warning)?;
                    return Ok(());
                }
                limits::Take::No => return Ok(()),
            }
        } else {
            kind
        };
        self.append(source, raw_line, kind)
    }
    pub(crate) fn append(
        &mut self,
        source: EventSource,
        raw_line: Option<u64>,
        kind: EventKind,
    ) -> Result<(), StoreError> {
        let kind = {
            let redactor = self.redactor.read();
            if redactor.is_empty() {
                kind
            } else {
                redact_kind(kind, &redactor)
            }
        };
        let ev = self.log.append(source, raw_line, kind)?;
        self.queue(Persist::Event(ev.clone()));
        if let Some(tx) = &self.tx {
            let _ = tx.send(ev);
        }
        Ok(())
    }
    pub(crate) fn queue(&mut self, p: Persist) {
        self.backlog
            .fetch_add(p.size(), std::sync::atomic::Ordering::Relaxed);
        let _ = self.sink.send(p);
    }
    /// Bytes queued for the store and not yet taken.
    pub(crate) fn backlog(&self) -> usize {
        self.backlog.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub(crate) fn raw(&mut self, n: u64, line: String) {
        self.queue(Persist::Raw(n, line));
    }
    pub(crate) fn errand(&mut self, kind: EventKind) -> Result<(), StoreError> {
        self.emit(EventSource::Errand, None, kind)
    }
    pub(crate) fn notice(&mut self, message: impl Into<String>) -> Result<(), StoreError> {
        self.errand(EventKind::Notice {
            message: message.into(),
        })
    }
}

pub(crate) fn redact_kind(kind: EventKind, redactor: &Redactor) -> EventKind {
    match serde_json::to_string(&kind) {
        Ok(s) if redactor.finds(&s) => {
            serde_json::from_str(&redactor.redact(&s)).unwrap_or(EventKind::Notice {
                message: "[event withheld: it contained a secret]".into(),
            })
        }
        _ => kind,
    }
}
