//! `t.logs()`: the lines the plugin under test logged (`ctx.log` and `console`), captured
//! on the suite's thread instead of written out.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Where plugins' log lines are emitted (`ctx.log`, `console`).
const PLUGIN_LOG_TARGET: &str = "weir_plugin_runtime::quickjs::bindings";

/// The captured lines of one plugin.
#[derive(Clone)]
pub(super) struct LogCapture {
    plugin: Arc<str>,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl LogCapture {
    /// Captures the lines of `plugin` (its id).
    pub(super) fn new(plugin: &str) -> Self {
        Self {
            plugin: Arc::from(plugin),
            lines: Arc::default(),
        }
    }

    /// A subscriber that captures, to set as the suite thread's default.
    pub(super) fn subscriber(&self) -> impl Subscriber + Send + Sync + use<> {
        tracing_subscriber::registry().with(self.clone())
    }

    /// The lines captured since the last call (`{level, message, fields, source}`).
    pub(super) fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The fields of a plugin's log event.
#[derive(Default)]
struct Line {
    plugin: Option<String>,
    message: Option<String>,
    fields: Option<String>,
    console: bool,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = Some(value.to_owned()),
            "fields" => self.fields = Some(value.to_owned()),
            "source" => self.console = value == "console",
            "message" => self.message = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber> Layer<S> for LogCapture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != PLUGIN_LOG_TARGET {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        if line.plugin.as_deref() != Some(&*self.plugin) {
            return;
        }
        let fields = line
            .fields
            .filter(|text| !text.is_empty())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_else(|| json!({}));
        self.lock().push(json!({
            "level": event.metadata().level().as_str().to_lowercase(),
            "message": line.message.unwrap_or_default(),
            "fields": fields,
            "source": if line.console { "console" } else { "ctx.log" },
        }));
    }
}
