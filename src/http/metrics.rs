//! `GET /metrics`: the figures of `eddy.sources`, `eddy.views`, `eddy.sinks` and
//! `eddy.checkpoints`, read at scrape time, in Prometheus' text format (through
//! `prometheus-client`). Counters end in `_total`; rates (rows/s) are Prometheus' `rate()`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::connectors::stream::NO_WATERMARK;
use crate::engine::Engine;
use crate::error::EddyError;

/// The registry `/metrics` encodes.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Metrics of `engine`'s objects.
    pub fn new(engine: Arc<Engine>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Figures(engine)));
        Metrics { registry }
    }

    /// The text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The handler.
pub async fn scrape(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => super::error_response(EddyError::Internal(format!("metrics: {e}"))),
    }
}

/// Reads the live figures at each scrape.
struct Figures(Arc<Engine>);

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Figures")
    }
}

/// A value of one series.
enum Value {
    Counter(u64),
    /// A counter of seconds.
    Seconds(f64),
    Gauge(f64),
}

/// One metric: name (without `_total`), help, and its series by label values.
struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Vec<(Vec<String>, Value)>,
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A watermark (ns) in seconds, if there is one.
fn secs(watermark: i64) -> Option<f64> {
    (watermark != NO_WATERMARK).then(|| watermark as f64 / 1e9)
}

impl Figures {
    fn families(&self) -> Vec<Family> {
        let catalog = self.0.catalog();
        let now = now_secs();
        // A metric with one label (none when it is "").
        let fam = |name, help, label: &'static str, series: Vec<(String, Value)>| Family {
            name,
            help,
            labels: match label {
                "source" => &["source"],
                "view" => &["view"],
                "sink" => &["sink"],
                "outcome" => &["outcome"],
                "state" => &["state"],
                _ => &[],
            },
            series: series.into_iter().map(|(l, v)| (vec![l], v)).collect(),
        };
        let mut out = Vec::new();
        let sources = catalog.streams();
        let per_source = |f: &dyn Fn(&crate::connectors::StreamObject) -> Option<Value>| {
            sources
                .iter()
                .filter_map(|s| Some((s.name.clone(), f(s)?)))
                .collect::<Vec<_>>()
        };
        let counter =
            |a: &std::sync::atomic::AtomicU64| Some(Value::Counter(a.load(Ordering::Relaxed)));
        out.push(fam(
            "eddy_source_rows_read",
            "Rows a source or table has read.",
            "source",
            per_source(&|s| counter(&s.metrics.rows_read)),
        ));
        out.push(fam(
            "eddy_source_rows_rejected",
            "Records a source rejected (kept in eddy.dead_letters).",
            "source",
            per_source(&|s| counter(&s.metrics.rows_rejected)),
        ));
        out.push(fam(
            "eddy_source_rows_late",
            "Rows that arrived behind the source's watermark.",
            "source",
            per_source(&|s| counter(&s.metrics.rows_late)),
        ));
        out.push(fam(
            "eddy_source_lag_records",
            "Records upstream not yet read (Kafka).",
            "source",
            per_source(&|s| Some(Value::Gauge(s.metrics.lag.load(Ordering::Relaxed) as f64))),
        ));
        out.push(fam(
            "eddy_source_watermark_delay_seconds",
            "Wall-clock time minus the source's event-time watermark.",
            "source",
            per_source(&|s| {
                secs(s.metrics.watermark.load(Ordering::Relaxed)).map(|w| Value::Gauge(now - w))
            }),
        ));
        out.push(fam(
            "eddy_source_failed",
            "1 when the source stopped with an error.",
            "source",
            per_source(&|s| {
                Some(Value::Gauge(f64::from(u8::from(
                    s.metrics.status.lock().as_str() == "failed",
                ))))
            }),
        ));
        let views = catalog.views();
        let per_view = |f: &dyn Fn(&crate::views::MaterializedView) -> Option<Value>| {
            views
                .iter()
                .filter_map(|v| Some((v.name.clone(), f(v)?)))
                .collect::<Vec<_>>()
        };
        out.push(fam(
            "eddy_view_rows",
            "Rows a materialized view holds.",
            "view",
            per_view(&|v| Some(Value::Gauge(v.store.lock().row_count() as f64))),
        ));
        out.push(fam(
            "eddy_view_state_bytes",
            "Bytes of a view's operator state and rows.",
            "view",
            per_view(&|v| Some(Value::Gauge(v.state_bytes() as f64))),
        ));
        out.push(fam(
            "eddy_view_rows_late",
            "Input rows a view dropped as late.",
            "view",
            per_view(&|v| counter(&v.rows_late)),
        ));
        out.push(fam(
            "eddy_view_freshness_seconds",
            "Wall-clock time minus the view's event-time watermark.",
            "view",
            per_view(&|v| secs(v.watermark.load(Ordering::Relaxed)).map(|w| Value::Gauge(now - w))),
        ));
        out.push(fam(
            "eddy_view_subscribers",
            "Clients subscribed to the view's changes (SUBSCRIBE, HTTP).",
            "view",
            per_view(&|v| Some(Value::Gauge(v.changes.lock().subscribers() as f64))),
        ));
        out.push(fam(
            "eddy_view_failed",
            "1 when the view stopped with an error.",
            "view",
            per_view(&|v| {
                Some(Value::Gauge(f64::from(u8::from(
                    v.status.lock().as_str() == "failed",
                ))))
            }),
        ));
        let ops: Vec<(String, Arc<crate::views::OperatorStats>)> = views
            .iter()
            .flat_map(|v| v.operators().into_iter().map(|o| (v.name.clone(), o)))
            .collect();
        let per_op = |name, help, f: &dyn Fn(&crate::views::OperatorStats) -> Value| Family {
            name,
            help,
            labels: &["view", "operator", "partition"],
            series: ops
                .iter()
                .map(|(v, o)| (vec![v.clone(), o.id.clone(), o.partition.to_string()], f(o)))
                .collect(),
        };
        out.push(per_op(
            "eddy_operator_rows_in",
            "Rows into an operator partition.",
            &|o| Value::Counter(o.rows_in.load(Ordering::Relaxed)),
        ));
        out.push(per_op(
            "eddy_operator_rows_out",
            "Rows out of an operator partition.",
            &|o| Value::Counter(o.rows_out.load(Ordering::Relaxed)),
        ));
        out.push(per_op(
            "eddy_operator_state_bytes",
            "Bytes of an operator partition's state.",
            &|o| Value::Gauge(o.state_bytes.load(Ordering::Relaxed) as f64),
        ));
        out.push(per_op(
            "eddy_operator_blocked_seconds",
            "Time an operator partition's task waited to hand its output on.",
            &|o| Value::Seconds(o.blocked_ns.load(Ordering::Relaxed) as f64 / 1e9),
        ));
        let sinks = catalog.sinks();
        out.push(fam(
            "eddy_sink_messages_written",
            "Messages a sink wrote.",
            "sink",
            sinks
                .iter()
                .map(|k| {
                    (
                        k.name.clone(),
                        Value::Counter(k.metrics.messages_written.load(Ordering::Relaxed)),
                    )
                })
                .collect(),
        ));
        let sessions = self.0.sessions.all();
        let active = sessions.iter().filter(|a| a.active()).count();
        out.push(fam(
            "eddy_connections",
            "Open Postgres connections, by state.",
            "state",
            vec![
                ("active".into(), Value::Gauge(active as f64)),
                (
                    "idle".into(),
                    Value::Gauge((sessions.len() - active) as f64),
                ),
            ],
        ));
        if let Some(hub) = self.0.checkpoint_hub() {
            let t = hub.totals();
            out.push(fam(
                "eddy_checkpoints",
                "Checkpoint attempts, by outcome.",
                "outcome",
                vec![
                    ("completed".into(), Value::Counter(t.completed)),
                    ("failed".into(), Value::Counter(t.failed)),
                ],
            ));
            out.push(fam(
                "eddy_checkpoint_bytes",
                "Bytes completed checkpoints wrote.",
                "",
                vec![(String::new(), Value::Counter(t.bytes))],
            ));
            out.push(fam(
                "eddy_checkpoint_duration_seconds",
                "Summed duration of completed checkpoints.",
                "",
                vec![(String::new(), Value::Seconds(t.duration_ms as f64 / 1e3))],
            ));
        }
        out
    }
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.families() {
            let Some((_, first)) = f.series.first() else {
                continue;
            };
            let kind = match first {
                Value::Counter(_) | Value::Seconds(_) => MetricType::Counter,
                Value::Gauge(_) => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(f.name, f.help, None, kind)?;
            for (values, value) in &f.series {
                let labels: Vec<(&str, &str)> = f
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect();
                let series = metric.encode_family(&labels)?;
                match value {
                    Value::Counter(v) => ConstCounter::new(*v).encode(series)?,
                    Value::Seconds(v) => ConstCounter::new(*v).encode(series)?,
                    Value::Gauge(v) => ConstGauge::new(*v).encode(series)?,
                }
            }
        }
        Ok(())
    }
}
