//! What task bodies log in a worker process, kept per attempt and sent back with its end,
//! so the coordinator logs it under the task run.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use super::frame::LogLine;

thread_local! {
    /// The log lines of the attempt running on this thread, if one is.
    static LINES: RefCell<Option<Vec<LogLine>>> = const { RefCell::new(None) };
}

/// Runs `f` with what it logs kept; returns them with its result.
pub(super) fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<LogLine>) {
    let outer = LINES.with(|l| l.replace(Some(Vec::new())));
    let r = f();
    let lines = LINES.with(|l| l.replace(outer)).unwrap_or_default();
    (r, lines)
}

/// A future whose polls keep what they log.
pub(super) struct Captured<F> {
    inner: Pin<Box<F>>,
    lines: Vec<LogLine>,
}

impl<F: Future> Captured<F> {
    pub(super) fn new(inner: F) -> Self {
        Captured {
            inner: Box::pin(inner),
            lines: Vec::new(),
        }
    }
}

impl<F: Future> Future for Captured<F> {
    type Output = (F::Output, Vec<LogLine>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let kept = std::mem::take(&mut this.lines);
        let outer = LINES.with(|l| l.replace(Some(kept)));
        let polled = this.inner.as_mut().poll(cx);
        this.lines = LINES.with(|l| l.replace(outer)).unwrap_or_default();
        match polled {
            Poll::Ready(r) => Poll::Ready((r, std::mem::take(&mut this.lines))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The worker's `tracing` subscriber: task bodies' events at info and above, kept for the
/// attempt running where they happen; spans are not tracked (the coordinator has its own).
pub(super) struct Capture;

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // The engine's own lines (`Running`) are the coordinator's to log.
        *metadata.level() <= Level::INFO && metadata.target() != "tideflow"
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::INFO)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        LINES.with(|l| {
            if let Some(lines) = l.borrow_mut().as_mut() {
                let mut text = Text::default();
                event.record(&mut text);
                let meta = event.metadata();
                lines.push(LogLine {
                    level: match *meta.level() {
                        Level::ERROR => 1,
                        Level::WARN => 2,
                        Level::INFO => 3,
                        Level::DEBUG => 4,
                        Level::TRACE => 5,
                    },
                    target: meta.target().to_owned(),
                    text: text.finish(),
                });
            }
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message, then its other fields as `name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }
}
