//! Log lines a person reads: one short line per event, the task run it belongs to named
//! as in the summary (`cleaned[7]`), its attempt when it is not the first, and none of the
//! span fields or run ids repeated on every line. JSON lines for machines.
//!
//! ```text
//! 00:06:31.204  INFO tickets: read 2533 events from `examples/data/incident_event_log_sample.csv`
//! 00:06:31.377  WARN cleaned[7] (attempt 2): Retrying in 2s error=the source flaked
//! ```

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer;

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One short line per event, for people.
    #[default]
    Text,
    /// One JSON object per event, with its span's fields, for machines.
    Json,
}

/// Sets the program's `tracing` subscriber: log lines to standard error in `format`
/// (colored on a terminal), filtered by `RUST_LOG` (`info` by default), and the run
/// history's layer (task runs' lines at `info` and above). Does nothing when the
/// program has set a subscriber already.
pub fn init_logs(format: LogFormat) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let history =
        flow_history::HistoryLayer::new().with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let terminal: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(|| crate::progress::LogWriter)
            .with_ansi(std::io::stderr().is_terminal())
            .event_format(Compact)
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter())
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(RunLabels)
        .with(terminal)
        .with(history)
        .try_init();
}

/// What a `flow_run` or `task_run` span shows on its lines: the flow's name, or the task
/// run's (`cleaned[7]`) and its attempt.
struct Label {
    name: String,
    attempt: u32,
    /// The flow run's id, first 8 characters.
    run: String,
}

/// Whether lines name their flow run too (`cc66e579 log_summary: ..`): under `serve`,
/// where several runs log at once.
static SHOW_RUNS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes each line under a flow run start with the run's id (its first 8 characters).
pub(crate) fn show_runs() {
    SHOW_RUNS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Reads the fields of the engine's spans.
#[derive(Default)]
struct SpanFields {
    flow: Option<String>,
    task: Option<String>,
    map_index: Option<u64>,
    attempt: u64,
    run: String,
}

impl Visit for SpanFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "flow" => self.flow = Some(format!("{value:?}").trim_matches('"').to_owned()),
            "task" => self.task = Some(format!("{value:?}")),
            "flow_run_id" => self.run = format!("{value:?}").trim_matches('"').chars().take(8).collect(),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "flow" => self.flow = Some(value.to_owned()),
            "task" => self.task = Some(value.to_owned()),
            "flow_run_id" => self.run = value.chars().take(8).collect(),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "map_index" => self.map_index = Some(value),
            "attempt" => self.attempt = value,
            _ => {}
        }
    }
}

/// Keeps a [`Label`] on each `flow_run` and `task_run` span.
struct RunLabels;

impl<S> Layer<S> for RunLabels
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let kind = attrs.metadata().name();
        if kind != "flow_run" && kind != "task_run" {
            return;
        }
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        let name = match (kind, fields.task, fields.flow) {
            ("task_run", Some(task), _) => match fields.map_index {
                Some(i) => format!("{task}[{i}]"),
                None => task,
            },
            (_, _, Some(flow)) => flow,
            _ => return,
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Label {
                name,
                attempt: u32::try_from(fields.attempt).unwrap_or(u32::MAX),
                run: fields.run,
            });
        }
    }
}

/// The message first, then the other fields as `key=value`; a `task` field (the engine's
/// lines about a task run, logged under the flow run) names the line instead.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    task: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        // The task run's node and index: the line's name already says which it is.
        if !matches!(field.name(), "task_node" | "task_index") {
            use std::fmt::Write as _;
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else if field.name() == "task" {
            self.task = Some(format!("{value:?}"));
        } else {
            use std::fmt::Write as _;
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else if field.name() == "task" {
            self.task = Some(value.to_owned());
        } else {
            use std::fmt::Write as _;
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

/// The text format: `HH:MM:SS.mmm LEVEL label (attempt n): message key=value` (UTC).
struct Compact;

impl<S, N> FormatEvent<S, N> for Compact
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() % 86_400;
        write!(
            writer,
            "{:02}:{:02}:{:02}.{:03} ",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
            now.subsec_millis()
        )?;
        let level = *event.metadata().level();
        let (color, text) = match level {
            Level::ERROR => ("\x1b[31m", "ERROR"),
            Level::WARN => ("\x1b[33m", " WARN"),
            Level::INFO => ("\x1b[32m", " INFO"),
            Level::DEBUG => ("\x1b[34m", "DEBUG"),
            Level::TRACE => ("\x1b[35m", "TRACE"),
        };
        if writer.has_ansi_escapes() {
            write!(writer, "{color}{text}\x1b[0m ")?;
        } else {
            write!(writer, "{text} ")?;
        }
        let label = ctx.event_scope().and_then(|mut scope| {
            scope.find_map(|span| {
                span.extensions()
                    .get::<Label>()
                    .map(|l| (l.name.clone(), l.attempt, l.run.clone()))
            })
        });
        let mut line = String::new();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.message.take().unwrap_or_default();
        let rest = std::mem::take(&mut fields.rest);
        let task = fields.task.take();
        if let Some((_, _, run)) = label
            .as_ref()
            .filter(|_| SHOW_RUNS.load(std::sync::atomic::Ordering::Relaxed))
        {
            if !run.is_empty() {
                line.push_str(run);
                line.push(' ');
            }
        }
        match (task, label) {
            (Some(task), _) => line.push_str(&task),
            (None, Some((name, attempt, _))) => {
                line.push_str(&name);
                if attempt > 1 {
                    line.push_str(&format!(" (attempt {attempt})"));
                }
            }
            (None, None) => {}
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        writeln!(writer, "{line}{message}{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captures what the text format writes, under spans like the engine's.
    #[test]
    fn a_line_names_its_task_run_and_attempt_and_nothing_else() {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(RunLabels).with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .event_format(Compact),
        );
        tracing::subscriber::with_default(subscriber, || {
            let flow = tracing::info_span!("flow_run", flow = "generous_riders", flow_run_id = "20d3baad");
            let _f = flow.enter();
            tracing::warn!("flow-level line");
            let task = tracing::info_span!(
                "task_run",
                task = "cleaned",
                map_index = 7u32,
                attempt = 2u32,
                flow_run_id = "20d3baad",
                task_run_id = "20d3baad-2-7"
            );
            let _t = task.enter();
            tracing::info!(rows = 12, "cleaned the chunk");
            drop(_t);
            tracing::info!(task = "cleaned[7]", "Success");
        });
        let text = String::from_utf8(buffer.0.lock().expect("not poisoned").clone()).expect("UTF-8");
        let lines: Vec<&str> = text.lines().map(|l| &l[13..]).collect();
        assert_eq!(
            lines,
            [
                " WARN generous_riders: flow-level line",
                " INFO cleaned[7] (attempt 2): cleaned the chunk rows=12",
                " INFO cleaned[7]: Success"
            ]
        );
    }
}
