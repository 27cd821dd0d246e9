//! What librdkafka reports on its own — its log, and client errors such as a
//! refused SASL login or a failed TLS handshake — routed to eddy's log, the
//! latest error kept, so a source can say why it cannot read rather than only
//! that it cannot.

use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// A client context that remembers the latest client error (clones share it).
#[derive(Clone, Default)]
pub struct Reporting {
    name: Arc<str>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Reporting {
    /// A context for the client of `name` (a source or sink).
    pub fn new(name: &str) -> Self {
        Reporting {
            name: name.into(),
            last_error: Arc::default(),
        }
    }

    /// The latest client error since the last call, if any.
    pub fn take_error(&self) -> Option<String> {
        self.last_error.lock().take()
    }
}

impl std::fmt::Debug for Reporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reporting({})", self.name)
    }
}

/// `error` and, when the client reported one meanwhile, its own words.
pub fn with_client_error(error: String, reports: &Reporting) -> String {
    match reports.take_error() {
        Some(c) => format!("{error}; the client reports: {c}"),
        None => error,
    }
}

impl ClientContext for Reporting {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(client = %self.name, fac, "librdkafka: {message}");
                *self.last_error.lock() = Some(message.to_string());
            }
            L::Warning => tracing::warn!(client = %self.name, fac, "librdkafka: {message}"),
            L::Notice | L::Info => {
                tracing::info!(client = %self.name, fac, "librdkafka: {message}")
            }
            L::Debug => tracing::debug!(client = %self.name, fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(client = %self.name, %error, reason, "kafka client error");
        let text = if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_string()
        };
        *self.last_error.lock() = Some(text);
    }
}

impl ConsumerContext for Reporting {}
