//! Options of Kafka sources (and sinks): where the brokers are, which topic,
//! where to start, and librdkafka properties passed through.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::connectors::datagen::parse_duration_nanos;

/// Where a source starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    /// The oldest retained record of each partition.
    Earliest,
    /// Only records produced after the source starts.
    Latest,
    /// The first record at or after this time (epoch milliseconds).
    Timestamp(i64),
}

/// Kafka connection options.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// The topic.
    pub topic: String,
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Where to start.
    pub startup: StartupMode,
    /// Consumer group offsets are committed to (for lag monitoring only).
    pub group_id: String,
    /// A partition without records for this long stops holding the watermark back.
    pub idle_timeout: Duration,
    /// Other librdkafka properties (`properties.<name>`).
    pub properties: BTreeMap<String, String>,
}

impl KafkaOptions {
    /// Read the Kafka options of source `name`, removing them from `options`.
    pub fn from_options(
        name: &str,
        options: &mut BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let (topic, bootstrap) = take_topic_and_brokers(options)?;
        let ts = options.remove("scan.startup.timestamp_millis");
        let startup = match options
            .remove("scan.startup.mode")
            .map(|m| m.to_lowercase())
            .as_deref()
        {
            None | Some("earliest") => StartupMode::Earliest,
            Some("latest") => StartupMode::Latest,
            Some("timestamp") => {
                let ts = ts.ok_or(
                    "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp_millis'",
                )?;
                StartupMode::Timestamp(ts.parse().map_err(|_| {
                    format!("scan.startup.timestamp_millis must be an integer, got '{ts}'")
                })?)
            }
            Some(other) => {
                return Err(format!(
                    "scan.startup.mode must be 'earliest', 'latest' or 'timestamp', got '{other}'"
                ))
            }
        };
        let idle_timeout = match options.remove("watermark.idle_timeout") {
            None => Duration::from_secs(30),
            Some(v) => parse_duration_nanos(&v)
                .filter(|&n| n > 0)
                .map(|n| Duration::from_nanos(n as u64))
                .ok_or(format!(
                    "watermark.idle_timeout must be a duration such as '30s' or '500ms', got '{v}'"
                ))?,
        };
        let group_id = options
            .remove("group.id")
            .or_else(|| options.remove("properties.group.id"))
            .unwrap_or_else(|| format!("eddy-{name}"));
        let properties = take_properties(options)?;
        Ok(KafkaOptions {
            topic,
            bootstrap,
            startup,
            group_id,
            idle_timeout,
            properties,
        })
    }
}

/// Remove and return `topic` and the bootstrap servers (under any of their spellings).
pub(super) fn take_topic_and_brokers(
    options: &mut BTreeMap<String, String>,
) -> Result<(String, String), String> {
    let topic = options
        .remove("topic")
        .ok_or("connector 'kafka' needs a topic option")?;
    let mut bootstrap = None;
    for key in [
        "properties.bootstrap.server",
        "properties.bootstrap.servers",
        "bootstrap.servers",
    ] {
        if let Some(v) = options.remove(key) {
            bootstrap = Some(v);
        }
    }
    let bootstrap = bootstrap
        .ok_or("connector 'kafka' needs 'properties.bootstrap.server' (or 'bootstrap.servers')")?;
    Ok((topic, bootstrap))
}

/// Remove `properties.<name>` options and return them as librdkafka properties.
/// Offset management is eddy's: auto-commit settings are refused.
/// librdkafka properties that load code or run commands: refused.
const CODE_PROPERTIES: &[&str] = &[
    "plugin.library.paths",
    "ssl.engine.location",
    "sasl.kerberos.kinit.cmd",
];

/// True for a librdkafka property whose value is a file eddy would read
/// (certificates, keys, keytabs): checked against `--file-root`.
pub fn is_file_property(name: &str) -> bool {
    name.ends_with(".location") || name == "sasl.kerberos.keytab"
}

pub(super) fn take_properties(
    options: &mut BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let keys: Vec<String> = options
        .keys()
        .filter(|k| k.starts_with("properties."))
        .cloned()
        .collect();
    let mut properties = BTreeMap::new();
    for k in keys {
        if let Some(v) = options.remove(&k) {
            let prop = k["properties.".len()..].to_string();
            if ["enable.auto.commit", "enable.auto.offset.store"].contains(&prop.as_str()) {
                return Err(format!("'{k}' cannot be set: eddy tracks offsets itself"));
            }
            if CODE_PROPERTIES.contains(&prop.as_str()) {
                return Err(format!(
                    "'{k}' is not allowed: it makes librdkafka load code or run a command on the \
                     eddy host"
                ));
            }
            properties.insert(prop, v);
        }
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_loading_properties_are_refused() {
        for p in CODE_PROPERTIES {
            let mut o = BTreeMap::from([(format!("properties.{p}"), "/tmp/x.so".to_string())]);
            let e = take_properties(&mut o).unwrap_err();
            assert!(e.contains("load code or run a command"), "{e}");
        }
        assert!(is_file_property("ssl.ca.location"));
        assert!(is_file_property("sasl.kerberos.keytab"));
        assert!(!is_file_property("security.protocol"));
    }

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_and_removes_kafka_options() {
        let mut o = opts(&[
            ("topic", "t"),
            ("properties.bootstrap.server", "h:1"),
            ("scan.startup.mode", "timestamp"),
            ("scan.startup.timestamp_millis", "123"),
            ("watermark.idle_timeout", "2s"),
            ("properties.client.id", "me"),
            ("format", "json"),
        ]);
        let k = KafkaOptions::from_options("src", &mut o).unwrap();
        assert_eq!(k.topic, "t");
        assert_eq!(k.bootstrap, "h:1");
        assert_eq!(k.startup, StartupMode::Timestamp(123));
        assert_eq!(k.idle_timeout, Duration::from_secs(2));
        assert_eq!(k.group_id, "eddy-src");
        assert_eq!(
            k.properties.get("client.id").map(String::as_str),
            Some("me")
        );
        assert_eq!(o.keys().collect::<Vec<_>>(), vec!["format"]);
    }

    #[test]
    fn clear_errors() {
        let mut o = opts(&[("topic", "t")]);
        assert!(KafkaOptions::from_options("s", &mut o)
            .unwrap_err()
            .contains("bootstrap"));
        let mut o = opts(&[
            ("topic", "t"),
            ("bootstrap.servers", "h"),
            ("scan.startup.mode", "soon"),
        ]);
        assert!(KafkaOptions::from_options("s", &mut o)
            .unwrap_err()
            .contains("scan.startup.mode"));
    }
}
