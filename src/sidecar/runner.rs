//! Single flight with coalescing: one run at a time in this process. Requests that
//! arrive while a run is in flight wait for exactly one follow-up run per distinct
//! request (same stages, dry-run and force), which reads the files afresh; every
//! waiting caller gets that run's report. Nobody gets a "busy" error.
//!
//! Runs execute on their own task, so a caller that goes away (an HTTP client that
//! disconnects) never cancels a run half-way.

use crate::report::Report;
use crate::sync::{Engine, Request, Stages};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, oneshot};

/// What makes two requests the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    stages: Stages,
    dry_run: bool,
    force: bool,
}

impl Key {
    fn of(r: &Request) -> Key {
        Key {
            stages: r.stages,
            dry_run: r.dry_run,
            force: r.force,
        }
    }
}

struct Waiting {
    request: Request,
    waiters: Vec<oneshot::Sender<Report>>,
}

#[derive(Default)]
struct State {
    running: bool,
    queue: VecDeque<Waiting>,
    last: Option<Report>,
    runs: u64,
}

#[derive(Clone)]
pub struct Runner {
    engine: Engine,
    state: Arc<Mutex<State>>,
    idle: Arc<Notify>,
}

impl Runner {
    pub fn new(engine: Engine) -> Runner {
        Runner {
            engine,
            state: Arc::new(Mutex::new(State::default())),
            idle: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn last_report(&self) -> Option<Report> {
        self.lock().last.clone()
    }

    /// Runs started by this runner so far.
    pub fn runs(&self) -> u64 {
        self.lock().runs
    }

    /// Runs `request`, or joins the queued run with the same parameters, and returns
    /// the report of the run that served it.
    pub async fn submit(&self, request: Request) -> Report {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.lock();
            let key = Key::of(&request);
            if !s.running {
                s.running = true;
                Some(Waiting {
                    request,
                    waiters: vec![tx],
                })
            } else {
                match s.queue.iter_mut().find(|w| Key::of(&w.request) == key) {
                    Some(w) => w.waiters.push(tx),
                    None => s.queue.push_back(Waiting {
                        request,
                        waiters: vec![tx],
                    }),
                }
                None
            }
        };
        if let Some(first) = start {
            let runner = self.clone();
            tokio::spawn(async move { runner.drive(first).await });
        }
        match rx.await {
            Ok(report) => report,
            // Only if the driving task panicked; the engine itself never does.
            Err(_) => self.last_report().unwrap_or_else(|| {
                Report::new(
                    String::new(),
                    crate::report::Trigger::Admin,
                    false,
                    chrono::Utc::now(),
                )
            }),
        }
    }

    /// Runs `next`, then every queued run, until the queue is empty.
    async fn drive(&self, mut next: Waiting) {
        loop {
            crate::metrics::set_in_progress(true);
            self.lock().runs += 1;
            let report = self.engine.run(&next.request).await;
            crate::metrics::record_run(&report);
            crate::metrics::set_in_progress(false);
            for w in next.waiters.drain(..) {
                let _ = w.send(report.clone());
            }
            let mut s = self.lock();
            s.last = Some(report);
            match s.queue.pop_front() {
                Some(w) => next = w,
                None => {
                    s.running = false;
                    drop(s);
                    self.idle.notify_waiters();
                    return;
                }
            }
        }
    }

    /// Resolves when no run is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if !self.lock().running {
                return;
            }
            notified.await;
        }
    }
}
