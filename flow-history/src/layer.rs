//! Log lines into the history: a `tracing` layer that files each event logged in a task
//! run's span (the task body's lines, and the engine's about that task run) under its
//! run, task run and attempt, and the warnings and errors of a flow run's span under
//! the run.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::mpsc::SyncSender;
use std::sync::{PoisonError, RwLock};

use flow_runtime::FlowRunId;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::writer::{LogRecord, Msg};

/// Where the layer sends lines: the history that last called
/// [`crate::History::capture_logs`], until it closes.
static SINK: RwLock<Option<(u64, SyncSender<Msg>)>> = RwLock::new(None);

/// Sends the log lines of runs to the history `owner`'s writer `tx` from now on.
pub(crate) fn capture(owner: u64, tx: SyncSender<Msg>) {
    *SINK.write().unwrap_or_else(PoisonError::into_inner) = Some((owner, tx));
}

/// Stops sending log lines to the history `owner` (if they go there).
pub(crate) fn release(owner: u64) {
    let mut sink = SINK.write().unwrap_or_else(PoisonError::into_inner);
    if sink.as_ref().is_some_and(|(o, _)| *o == owner) {
        *sink = None;
    }
}

/// A `tracing` layer writing runs' log lines to the [`crate::History`] that called
/// [`crate::History::capture_logs`] last (nothing before that). Lines at `INFO` and
/// above are kept.
#[derive(Default)]
pub struct HistoryLayer {
    _private: (),
}

impl std::fmt::Debug for HistoryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryLayer").finish_non_exhaustive()
    }
}

impl HistoryLayer {
    /// The layer; install it once, with the program's subscriber.
    pub fn new() -> Self {
        HistoryLayer::default()
    }
}

/// Where a span's lines are filed.
#[derive(Clone, Copy)]
struct Scope {
    run: FlowRunId,
    node: Option<u32>,
    map_index: Option<u32>,
    attempt: Option<u32>,
}

/// Reads the ids of a `flow_run` or `task_run` span.
#[derive(Default)]
struct ScopeFields {
    flow_run: Option<FlowRunId>,
    task_run: Option<String>,
    attempt: Option<u32>,
    map_index: Option<u32>,
}

impl Visit for ScopeFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "flow_run_id" => self.flow_run = FlowRunId::from_str(&format!("{value:?}")).ok(),
            "task_run_id" => self.task_run = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "attempt" => self.attempt = u32::try_from(value).ok(),
            "map_index" => self.map_index = u32::try_from(value).ok(),
            _ => {}
        }
    }
}

impl ScopeFields {
    fn scope(self) -> Option<Scope> {
        let run = self.flow_run?;
        // `<flow run id>-<node>[-<index>]`; the flow run id is a UUID of 36 characters.
        let node = self
            .task_run
            .as_deref()
            .and_then(|t| t.get(37..))
            .and_then(|rest| rest.split('-').next())
            .and_then(|n| n.parse().ok());
        Some(Scope {
            run,
            node,
            map_index: node.and(self.map_index),
            attempt: node.and(self.attempt),
        })
    }
}

/// The message and the other fields (as a JSON object) of an event; the task run an
/// engine line logged in the flow run's span is about (`task_node`, `task_index`).
#[derive(Default)]
struct Line {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
    task_node: Option<u32>,
    task_index: Option<u32>,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields.insert(
                field.name().to_owned(),
                serde_json::Value::String(format!("{value:?}")),
            );
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.insert(
                field.name().to_owned(),
                serde_json::Value::String(value.to_owned()),
            );
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "task_node" => self.task_node = u32::try_from(value).ok(),
            "task_index" => self.task_index = u32::try_from(value).ok(),
            name => {
                self.fields.insert(name.to_owned(), value.into());
            }
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().to_owned(), value.into());
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

impl<S> Layer<S> for HistoryLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let name = attrs.metadata().name();
        if name != "task_run" && name != "flow_run" {
            return;
        }
        let mut fields = ScopeFields::default();
        attrs.record(&mut fields);
        if let (Some(scope), Some(span)) = (fields.scope(), ctx.span(id)) {
            span.extensions_mut().insert(scope);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::INFO || meta.target().starts_with("tideflow::history") {
            return;
        }
        let sink = SINK.read().unwrap_or_else(PoisonError::into_inner);
        let Some((_, tx)) = sink.as_ref() else {
            return;
        };
        let Some(scope) = ctx
            .event_scope(event)
            .and_then(|mut spans| spans.find_map(|span| span.extensions().get::<Scope>().copied()))
        else {
            return;
        };
        let mut line = Line::default();
        event.record(&mut line);
        // The engine's lines about a task run, logged in the flow run's span.
        let scope = match (scope.node, line.task_node) {
            (None, Some(node)) => {
                line.fields.remove("task");
                Scope {
                    node: Some(node),
                    map_index: line.task_index,
                    ..scope
                }
            }
            _ => scope,
        };
        // A flow run's own info lines are its state changes, which the history has.
        if scope.node.is_none() && *meta.level() > Level::WARN {
            return;
        }
        let record = LogRecord {
            run: scope.run,
            node: scope.node,
            map_index: scope.map_index,
            attempt: scope.attempt,
            level: level_name(meta.level()),
            at: crate::process::now(),
            target: meta.target().to_owned(),
            message: line.message,
            fields: (!line.fields.is_empty()).then(|| serde_json::Value::Object(line.fields).to_string()),
        };
        let _ = tx.send(Msg::Log(record));
    }
}
