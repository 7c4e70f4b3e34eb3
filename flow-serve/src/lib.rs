//! `serve`: runs a program's flows at their schedules' slots and when asked by hand,
//! each run recorded in the run history before it starts, until SIGINT or SIGTERM.
//!
//! ```ignore
//! // Through the `tideflow` crate (the CLI's `serve` does this):
//! let history = std::sync::Arc::new(tideflow::history::History::open_default()?);
//! tideflow::serve::Serve::new(history)
//!     .flow(ticket_model_evaluation())      // with its `#[schedule(..)]`s
//!     .run()                                // until SIGINT/SIGTERM
//!     .await?;
//! ```
//!
//! What a user relies on:
//! - **One run per slot, none forgotten.** Each due slot is recorded (`Scheduled`, with
//!   its time) before its run starts; the history holds one row per slot of a schedule,
//!   so a `serve` restarted at any moment, or a second `serve` of the same flows, never
//!   runs a slot twice. A slot recorded but not started when its `serve` died is run by
//!   the next `serve`. Slots that passed while no `serve` ran follow the flow's
//!   [`Missed`](flow_schedule::Missed) policy: skipped (the default), the latest run, or
//!   every one run. A schedule `serve` has never run starts at its next slot.
//! - **Concurrency.** With `max_running`, a due run waits for a running one to end, or is
//!   recorded `Skipped` ([`WhenBusy`](flow_schedule::WhenBusy)).
//! - **Runs by hand.** A run asked for through the history ([`History::request_run`],
//!   `run --via-serve`) is claimed by the `serve` of its flow and run alike.
//! - **Crashes.** Every 10 s it marks `Crashed` the runs whose programs died (as opening
//!   the history does), so a dashboard beside it shows them as they are.
//! - **Stopping.** The first SIGINT/SIGTERM stops scheduling; running runs get the grace
//!   period to finish, then are cancelled (`Cancelled`, recorded). A second signal cancels
//!   them at once. Runs recorded but not started stay `Scheduled` for the next `serve`.

#![warn(missing_docs)]

mod clock;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flow_history::{History, HistoryError, NewRun, Recordable, ServerId, Trigger};
use flow_runtime::registry::{Canceller, DynFlow, DynFlowRun};
use flow_runtime::schedule::{Missed, ScheduledRun, ServePolicy, WhenBusy};
use flow_runtime::FlowRunId;
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use clock::Clock;

/// What `serve` tells others (the dashboard) and hears from them: every state change of
/// the runs it runs, and a nudge to take runs asked for by hand at once.
#[derive(Clone, Debug)]
pub struct Hub {
    changes: tokio::sync::broadcast::Sender<Change>,
    nudge: Arc<tokio::sync::Notify>,
}

impl Hub {
    fn new() -> Self {
        Hub {
            changes: tokio::sync::broadcast::channel(4096).0,
            nudge: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The state changes of the runs `serve` runs, from now on. A receiver that falls
    /// behind misses changes (`RecvError::Lagged`): read the history again then.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Tells `serve` to look for runs asked for by hand now, not at its next poll.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }
}

/// A state change of a run `serve` runs (a task run's, or the flow run's).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The flow run.
    pub run: FlowRunId,
    /// The flow.
    pub flow: String,
    /// Whether a task run changed (else the flow run itself).
    pub task: bool,
    /// The new state's name.
    pub state: String,
}

/// Why `serve` cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The run history cannot be used.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// A schedule's parameter does not fit its flow.
    #[error("the schedule `{schedule}` of flow `{flow}` cannot run: {error}")]
    Params {
        /// The flow.
        flow: String,
        /// The schedule's text.
        schedule: String,
        /// What is wrong.
        error: Box<flow_runtime::FlowError>,
    },
    /// Two flows of one name.
    #[error("two flows are named `{0}`: serve one of them")]
    SameName(String),
}

/// How long running runs may take to finish after a stop, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// How often `serve` looks for runs asked for by hand, by default.
const POLL: Duration = Duration::from_secs(1);

/// How soon `serve` tries again to write to a history it could not write to.
const RETRY: Duration = Duration::from_secs(1);

/// How often `serve` tells the history it is alive.
const BEAT: Duration = Duration::from_secs(10);

/// `serve`, set up: its flows, the history, the grace period and the clock.
pub struct Serve {
    hub: Hub,
    history: Arc<History>,
    flows: Vec<DynFlow>,
    grace: Duration,
    clock: Clock,
    poll: Duration,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("flows", &self.flows.iter().map(DynFlow::name).collect::<Vec<_>>())
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// A run `serve` started, once it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// The run's id.
    pub id: FlowRunId,
    /// Its flow.
    pub flow: String,
    /// Its final state's name.
    pub state: String,
}

/// What a `serve` did, once stopped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServeReport {
    /// The runs it started, in the order they ended.
    pub finished: Vec<Finished>,
    /// Runs recorded and not started, left `Scheduled` for the next `serve`.
    pub left: usize,
}

impl Serve {
    /// `serve` recording in `history`, with no flows yet.
    pub fn new(history: Arc<History>) -> Self {
        Serve {
            hub: Hub::new(),
            history,
            flows: Vec::new(),
            grace: DEFAULT_GRACE,
            clock: Clock::system(),
            poll: POLL,
        }
    }

    /// Serves `flow`: its schedules, its policy, and runs asked for by hand.
    #[must_use]
    pub fn flow(mut self, flow: impl Into<DynFlow>) -> Self {
        self.flows.push(flow.into());
        self
    }

    /// How long running runs may take to finish once `serve` is told to stop (30 s by
    /// default); past it they are cancelled.
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The clock slots are read on ([`Clock::system`] by default; tests use
    /// [`Clock::tokio`] with tokio's paused time).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How often `serve` looks for runs asked for by hand (1 s by default).
    #[must_use]
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// What this `serve` tells and hears (for a dashboard beside it).
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// Serves until SIGINT or SIGTERM; a second one cancels running runs at once.
    ///
    /// # Errors
    /// As [`Serve::run_until`]; and when the signals cannot be listened to.
    pub async fn run(self) -> Result<ServeReport, ServeError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let listener = tokio::spawn(async move {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut int), Ok(mut term)) =
                    (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
                else {
                    return;
                };
                loop {
                    let name = tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                    };
                    if tx.send(name).is_err() {
                        return;
                    }
                }
            }
            #[cfg(not(unix))]
            loop {
                if tokio::signal::ctrl_c().await.is_err() || tx.send("Ctrl-C").is_err() {
                    return;
                }
            }
        });
        let report = self.serve(rx).await;
        listener.abort();
        report
    }

    /// Serves until `stop` completes.
    ///
    /// # Errors
    /// [`ServeError::History`] when the history cannot be written (a slot that cannot be
    /// recorded is not run); [`ServeError::Params`] when a schedule's parameter does not
    /// fit its flow, before anything runs.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ServeReport, ServeError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let stopper = tokio::spawn(async move {
            stop.await;
            let _ = tx.send("stop");
            // Held open: a closed channel is not a second stop.
            std::future::pending::<()>().await;
        });
        let report = self.serve(rx).await;
        stopper.abort();
        report
    }

    async fn serve(
        self,
        mut stops: mpsc::UnboundedReceiver<&'static str>,
    ) -> Result<ServeReport, ServeError> {
        let mut state = State::new(self)?;
        let mut report = ServeReport::default();
        let mut running: JoinSet<(usize, DynFlowRun)> = JoinSet::new();
        let mut cancel: HashMap<FlowRunId, Canceller> = HashMap::new();
        let mut next_poll = state.clock.now();
        let mut next_beat = tokio::time::Instant::now() + BEAT;
        let signal = loop {
            let now = state.clock.now();
            // A history that cannot be written now (locked by another program past the
            // busy timeout) loses nothing: the slots stay due and are tried again.
            let mut blocked = state.record_due(now).err();
            if now >= next_poll {
                match state.claim() {
                    Ok(()) => next_poll = now + state.poll,
                    Err(e) => blocked = Some(e),
                }
            }
            if tokio::time::Instant::now() >= next_beat {
                // Alive, and the runs of programs that died meanwhile marked `Crashed`.
                match state
                    .history
                    .server_beat(state.server)
                    .and_then(|()| state.history.sweep_crashed())
                {
                    Ok(crashed) => {
                        if crashed > 0 {
                            tracing::warn!("{crashed} run(s) marked Crashed: their programs ended without finishing them");
                        }
                        next_beat = tokio::time::Instant::now() + BEAT;
                    }
                    Err(e) => blocked = Some(e.into()),
                }
            }
            state.start_ready(&mut running, &mut cancel);
            let wake = match blocked {
                Some(e) => {
                    tracing::warn!("{e}; trying again in {}", flow_schedule::format_duration(RETRY));
                    now + RETRY
                }
                None => state.next_slot().map_or(next_poll, |slot| slot.min(next_poll)),
            };
            tokio::select! {
                signal = stops.recv() => break signal.unwrap_or("stop"),
                Some(joined) = running.join_next() => state.ended(joined, &mut cancel, &mut report),
                () = state.hub.nudge.notified() => next_poll = state.clock.now(),
                () = state.clock.sleep_until(wake) => {}
            }
        };
        // Stopping: no more slots; running runs get the grace period.
        let in_flight = running.len();
        if in_flight > 0 {
            tracing::info!(
                "{signal}: no more runs start; waiting up to {} for {in_flight} running run(s) to finish (a second signal cancels them)",
                flow_schedule::format_duration(state.grace)
            );
        } else {
            tracing::info!("{signal}: stopping");
        }
        let grace = tokio::time::sleep(state.grace);
        tokio::pin!(grace);
        let mut cancelled = false;
        while !running.is_empty() {
            tokio::select! {
                Some(joined) = running.join_next() => state.ended(joined, &mut cancel, &mut report),
                () = &mut grace, if !cancelled => {
                    tracing::warn!("the grace period is over: cancelling {} run(s)", cancel.len());
                    cancel.values().for_each(Canceller::cancel);
                    cancelled = true;
                }
                second = stops.recv(), if !cancelled => {
                    tracing::warn!("{}: cancelling {} run(s)", second.unwrap_or("stop"), cancel.len());
                    cancel.values().for_each(Canceller::cancel);
                    cancelled = true;
                }
            }
        }
        for done in &report.finished {
            if !state.history.wait(done.id) {
                tracing::warn!("the run history may miss the end of run {}", done.id);
            }
        }
        report.left = state.flows.iter().map(|f| f.queue.len()).sum();
        if report.left > 0 {
            tracing::info!(
                "{} run(s) not started stay scheduled for the next serve",
                report.left
            );
        }
        state.history.stop_server(state.server)?;
        Ok(report)
    }
}

/// A flow `serve` runs.
struct Served {
    flow: DynFlow,
    name: &'static str,
    description: String,
    version: String,
    policy: ServePolicy,
    running: usize,
    queue: VecDeque<Queued>,
}

/// A schedule of a flow, and where it is.
struct Entry {
    flow: usize,
    key: String,
    run: ScheduledRun,
    /// The flow with the schedule's parameters.
    prepared: DynFlow,
    /// Every parameter's value, as recorded.
    params: serde_json::Value,
    /// Its next slot to record.
    next: Option<Timestamp>,
}

/// A recorded run waiting to start.
struct Queued {
    id: FlowRunId,
    flow: DynFlow,
    label: String,
}

struct State {
    hub: Hub,
    history: Arc<History>,
    server: ServerId,
    clock: Clock,
    grace: Duration,
    poll: Duration,
    flows: Vec<Served>,
    entries: Vec<Entry>,
    /// Every run this `serve` queued, to take each once.
    known: HashSet<FlowRunId>,
    /// The paused schedules (flow, key), as of the last poll.
    paused: HashSet<(String, String)>,
}

impl State {
    fn new(serve: Serve) -> Result<State, ServeError> {
        let history = serve.history;
        let mut names = HashSet::new();
        for f in &serve.flows {
            if !names.insert(f.name()) {
                return Err(ServeError::SameName(f.name().to_owned()));
            }
        }
        let mut flows = Vec::new();
        let mut entries = Vec::new();
        for (i, flow) in serve.flows.into_iter().enumerate() {
            let info = flow.run_info();
            let mut flow = history.record(flow);
            let mut events = flow.subscribe(flow_runtime::Delivery::lossy(4096));
            let changes = serve.hub.changes.clone();
            tokio::spawn(async move {
                while let Some(received) = events.recv().await {
                    if let flow_runtime::Received::Event(ev) = received {
                        let _ = changes.send(Change {
                            run: ev.flow_run_id,
                            flow: ev.flow.clone(),
                            task: ev.task_run_id.is_some(),
                            state: ev.new.name().to_owned(),
                        });
                    }
                }
            });
            for run in flow.schedules() {
                let mut prepared = flow.clone();
                for (name, value) in &run.params {
                    prepared = prepared.with_param_json(name, value.clone()).map_err(|error| {
                        ServeError::Params {
                            flow: flow.name().to_owned(),
                            schedule: run.to_string(),
                            error: Box::new(error),
                        }
                    })?;
                }
                let params = serde_json::Value::Object(
                    prepared
                        .params()
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                );
                entries.push(Entry {
                    flow: i,
                    key: run.key(),
                    run: run.clone(),
                    prepared,
                    params,
                    next: None,
                });
            }
            flows.push(Served {
                name: flow.name(),
                policy: flow.policy(),
                flow,
                description: info.description,
                version: info.version,
                running: 0,
                queue: VecDeque::new(),
            });
        }
        let names: Vec<&str> = flows.iter().map(|f| f.name).collect();
        let server = history.start_server(&names)?;
        let mut state = State {
            hub: serve.hub,
            history,
            server,
            clock: serve.clock,
            grace: serve.grace,
            poll: serve.poll,
            flows,
            entries,
            known: HashSet::new(),
            paused: HashSet::new(),
        };
        state.paused = state.history.paused_schedules()?;
        state.place_entries()?;
        for f in &state.flows {
            let schedules: Vec<String> = state
                .entries
                .iter()
                .filter(|e| state.flows[e.flow].name == f.name)
                .map(|e| match e.next {
                    Some(next) => format!("{} (next {})", e.run, clock::show(next)),
                    None => format!("{} (ended)", e.run),
                })
                .collect();
            if schedules.is_empty() {
                tracing::info!("serving {}: no schedule, runs by hand", f.name);
            } else {
                tracing::info!("serving {}: {}", f.name, schedules.join("; "));
            }
        }
        Ok(state)
    }

    /// Each schedule's next slot, from what the history has of it and the flow's policy
    /// for slots missed while no `serve` ran.
    fn place_entries(&mut self) -> Result<(), ServeError> {
        let now = self.clock.now();
        for e in &mut self.entries {
            let flow = &self.flows[e.flow];
            let schedule = &e.run.schedule;
            let last = self
                .history
                .last_slot(flow.name, &e.key)?
                .and_then(clock::from_seconds);
            e.next = match last {
                // Never served: from its next slot on.
                None => schedule.next_from(now),
                Some(last) => {
                    let first_missed = schedule.next_after(last).filter(|t| *t < now);
                    match (flow.policy.missed, first_missed) {
                        (_, None) | (Missed::All, _) => schedule.next_after(last),
                        (Missed::Latest, Some(first)) => {
                            let latest = schedule.latest_at_or_before(now);
                            if latest.is_some_and(|l| l > first) {
                                tracing::info!(
                                    "{}: slots from {} passed while no serve ran; the latest, {}, runs now (missed = \"latest\")",
                                    flow.name,
                                    clock::show(first),
                                    clock::show(latest.unwrap_or(first))
                                );
                            }
                            latest
                        }
                        (Missed::Skip, Some(first)) => {
                            tracing::info!(
                                "{}: slots from {} to now passed while no serve ran and are skipped (missed = \"skip\")",
                                flow.name,
                                clock::show(first)
                            );
                            schedule.next_from(now)
                        }
                    }
                }
            };
        }
        Ok(())
    }

    fn next_slot(&self) -> Option<Timestamp> {
        self.entries.iter().filter_map(|e| e.next).min()
    }

    /// Records every slot that is due, queues its run (or records it `Skipped`).
    fn record_due(&mut self, now: Timestamp) -> Result<(), ServeError> {
        for e in &mut self.entries {
            while let Some(slot) = e.next.filter(|t| *t <= now) {
                let flow = &mut self.flows[e.flow];
                if self.paused.contains(&(flow.name.to_owned(), e.key.clone())) {
                    tracing::debug!(
                        "{} ({}): paused, slot {} not run",
                        flow.name,
                        e.run,
                        clock::show(slot)
                    );
                    e.next = e.run.schedule.next_after(slot);
                    continue;
                }
                let new = NewRun {
                    flow: flow.name,
                    description: &flow.description,
                    version: &flow.version,
                    parameters: &e.params,
                    schedule: Some(&e.key),
                    scheduled_for: clock::seconds(slot),
                    trigger: Trigger::Schedule,
                };
                let label = format!("{} for {} ({})", flow.name, clock::show(slot), e.run);
                if let Some(max) = flow.policy.max_running {
                    if flow.policy.when_busy == WhenBusy::Skip && flow.running + flow.queue.len() >= max {
                        let message = format!(
                            "not run: {} run(s) of {} were running (max_running = {max}, when_busy = \"skip\")",
                            flow.running, flow.name
                        );
                        if self.history.record_skipped_slot(&new, self.server, &message)? {
                            tracing::warn!("{label}: skipped, {message}");
                        }
                        e.next = e.run.schedule.next_after(slot);
                        continue;
                    }
                }
                match self.history.record_slot(&new, self.server)? {
                    Some(id) => {
                        self.known.insert(id);
                        flow.queue.push_back(Queued {
                            id,
                            flow: e.prepared.clone(),
                            label,
                        });
                    }
                    None => tracing::info!("{label}: already recorded by another serve, not run here"),
                }
                // Past the slot only once it is recorded: a failed write leaves it due.
                e.next = e.run.schedule.next_after(slot);
            }
        }
        Ok(())
    }

    /// Takes the runs asked for by hand, and those a gone `serve` left `Scheduled`.
    fn claim(&mut self) -> Result<(), ServeError> {
        self.paused = self.history.paused_schedules()?;
        let names: Vec<&str> = self.flows.iter().map(|f| f.name).collect();
        for record in self.history.claim_pending(self.server, &names)? {
            let Ok(id) = record.id.parse::<FlowRunId>() else {
                continue;
            };
            if !self.known.insert(id) {
                continue;
            }
            let Some(flow) = self.flows.iter_mut().find(|f| f.name == record.flow) else {
                continue;
            };
            let mut prepared = flow.flow.clone();
            let mut unfit = None;
            if let serde_json::Value::Object(params) = &record.parameters {
                for (name, value) in params {
                    match prepared.clone().with_param_json(name, value.clone()) {
                        Ok(p) => prepared = p,
                        Err(e) => {
                            unfit = Some(e);
                            break;
                        }
                    }
                }
            }
            let when = record
                .scheduled_for
                .and_then(clock::from_seconds)
                .map(clock::show);
            let label = match (&record.trigger.as_deref(), when) {
                (Some("manual"), _) => format!("{} asked for by hand", flow.name),
                (_, Some(when)) => format!("{} for {when} (left by a serve that stopped)", flow.name),
                _ => flow.name.to_owned(),
            };
            if let Some(e) = unfit {
                let message = format!("its parameters do not fit the flow served now: {e}");
                tracing::warn!("run {id} of {label}: {message}");
                self.history.cancel_scheduled(id, &message)?;
                continue;
            }
            flow.queue.push_back(Queued {
                id,
                flow: prepared,
                label,
            });
        }
        Ok(())
    }

    /// Starts the queued runs their flows' limits let start.
    fn start_ready(
        &mut self,
        running: &mut JoinSet<(usize, DynFlowRun)>,
        cancel: &mut HashMap<FlowRunId, Canceller>,
    ) {
        for (i, flow) in self.flows.iter_mut().enumerate() {
            while flow.policy.max_running.is_none_or(|max| flow.running < max) {
                let Some(q) = flow.queue.pop_front() else {
                    break;
                };
                let handle = q.flow.with_run_id(q.id).start();
                tracing::info!("run {} of {}: started", short(q.id), q.label);
                cancel.insert(q.id, handle.canceller());
                flow.running += 1;
                running.spawn(async move { (i, handle.finish().await) });
            }
        }
    }

    fn ended(
        &mut self,
        joined: Result<(usize, DynFlowRun), tokio::task::JoinError>,
        cancel: &mut HashMap<FlowRunId, Canceller>,
        report: &mut ServeReport,
    ) {
        let (i, run) = match joined {
            Ok(done) => done,
            // The engine's own panic: the run is lost, `serve` goes on.
            Err(e) => {
                tracing::error!("a run's task stopped: {e}");
                return;
            }
        };
        cancel.remove(&run.id());
        let flow = &mut self.flows[i];
        flow.running = flow.running.saturating_sub(1);
        let state = run.state().name().to_owned();
        match run.state().message() {
            Some(m) if !run.state().is_successful() => {
                tracing::warn!("run {} of {}: {state}: {m}", short(run.id()), flow.name);
            }
            _ => tracing::info!("run {} of {}: {state}", short(run.id()), flow.name),
        }
        report.finished.push(Finished {
            id: run.id(),
            flow: flow.name.to_owned(),
            state,
        });
    }
}

/// A run id's first 8 characters, as `runs` shows them.
fn short(id: FlowRunId) -> String {
    id.to_string().chars().take(8).collect()
}
