//! A view's changes as Kafka messages, JSON (`encode = 'json'`, the
//! default) or Avro (`encode = 'avro'`, see [`super::avro_sink`]); the
//! shapes by [`SinkMode`] are in [`super::sink`].

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

use super::avro_sink::{AvroEncoders, AvroSchemas};
use super::sink::{rows_as_json, SinkMode};
use crate::error::Result;
use crate::types::Changes;

/// One message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Key bytes, if any.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` is a tombstone (upsert sinks).
    pub value: Option<Vec<u8>>,
}

impl OutMessage {
    /// Bytes of key and value.
    pub fn len(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len)
    }

    /// True when the message has neither key nor value bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The Avro side of an encoder.
enum Avro {
    /// Schemas not registered yet when the encoder was made.
    Pending(Arc<AvroSchemas>),
    Ready(Box<AvroEncoders>),
}

/// Encodes a sink's changes as messages.
pub struct SinkEncoder {
    mode: SinkMode,
    key_cols: Vec<usize>,
    avro: Option<Avro>,
}

/// A change event: a row deleted (before) and/or inserted (after).
type Event = (Option<usize>, Option<usize>);

impl SinkEncoder {
    /// JSON messages of `mode`, keyed by columns `key_cols` (none: no key).
    pub fn json(mode: SinkMode, key_cols: Vec<usize>) -> Self {
        SinkEncoder {
            mode,
            key_cols,
            avro: None,
        }
    }

    /// Avro messages of `mode` with `schemas` (registered before the first
    /// encode, see [`AvroSchemas::register`]).
    pub fn avro(mode: SinkMode, key_cols: Vec<usize>, schemas: Arc<AvroSchemas>) -> Self {
        SinkEncoder {
            mode,
            key_cols,
            avro: Some(Avro::Pending(schemas)),
        }
    }

    /// The Avro schemas, when the messages are Avro.
    pub fn avro_schemas(&self) -> Option<Arc<AvroSchemas>> {
        match &self.avro {
            Some(Avro::Pending(s)) => Some(s.clone()),
            Some(Avro::Ready(e)) => Some(e.schemas().clone()),
            None => None,
        }
    }

    fn avro_encoders(&mut self) -> Result<Option<&mut AvroEncoders>> {
        if let Some(Avro::Pending(s)) = &self.avro {
            self.avro = Some(Avro::Ready(Box::new(AvroEncoders::new(s.clone())?)));
        }
        Ok(match &mut self.avro {
            Some(Avro::Ready(e)) => Some(e),
            _ => None,
        })
    }

    /// Each row of `batch` as a message value.
    fn values(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        match self.avro_encoders()? {
            Some(e) => e.rows(batch),
            None => Ok(rows_as_json(batch)?
                .into_iter()
                .map(String::into_bytes)
                .collect()),
        }
    }

    /// Encode a change batch as messages.
    pub fn encode(&mut self, changes: &Changes) -> Result<Vec<OutMessage>> {
        let batch = &changes.batch;
        let keys: Vec<Option<Vec<u8>>> = if self.key_cols.is_empty() {
            vec![None; batch.num_rows()]
        } else {
            let k = batch.project(&self.key_cols)?;
            let keys = match self.avro_encoders()? {
                Some(e) => e.keys(&k)?,
                None => rows_as_json(&k)?
                    .into_iter()
                    .map(String::into_bytes)
                    .collect(),
            };
            keys.into_iter().map(Some).collect()
        };
        if self.mode == SinkMode::AppendOnly {
            let rows = self.values(batch)?;
            let mut out = Vec::with_capacity(rows.len());
            for (i, row) in rows.into_iter().enumerate() {
                for _ in 0..changes.weight(i).max(0) {
                    out.push(OutMessage {
                        key: keys[i].clone(),
                        value: Some(row.clone()),
                    });
                }
            }
            return Ok(out);
        }
        let events = pair(changes, &keys);
        let key_of = |(before, after): &Event| after.or(*before).and_then(|i| keys[i].clone());
        if self.mode == SinkMode::Upsert {
            let rows = self.values(batch)?;
            return Ok(events
                .iter()
                .map(|e| OutMessage {
                    key: key_of(e),
                    value: e.1.map(|i| rows[i].clone()),
                })
                .collect());
        }
        let op = |(before, after): &Event| match (before, after) {
            (Some(_), Some(_)) => "u",
            (None, Some(_)) => "c",
            _ => "d",
        };
        let values: Vec<Vec<u8>> = match self.avro_encoders()? {
            Some(enc) => {
                let evs: Vec<(&str, Option<usize>, Option<usize>)> =
                    events.iter().map(|e| (op(e), e.0, e.1)).collect();
                enc.envelopes(batch, &evs)?
            }
            None => {
                let rows = rows_as_json(batch)?;
                let show = |r: Option<usize>| r.map_or("null", |i| rows[i].as_str());
                events
                    .iter()
                    .map(|e| {
                        format!(
                            r#"{{"op":"{}","before":{},"after":{}}}"#,
                            op(e),
                            show(e.0),
                            show(e.1)
                        )
                        .into_bytes()
                    })
                    .collect()
            }
        };
        Ok(events
            .iter()
            .zip(values)
            .map(|(e, v)| OutMessage {
                key: key_of(e),
                value: Some(v),
            })
            .collect())
    }
}

/// The change events of `changes`: a delete and an insert of the same key
/// are paired into an update.
fn pair(changes: &Changes, keys: &[Option<Vec<u8>>]) -> Vec<Event> {
    let mut pending_delete: HashMap<&[u8], usize> = HashMap::new();
    let mut events: Vec<Event> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let w = changes.weight(i);
        let key = key.as_deref();
        if w < 0 {
            if let Some(k) = key {
                pending_delete.insert(k, events.len());
            }
            events.push((Some(i), None));
        } else if w > 0 {
            match key.and_then(|k| pending_delete.remove(k)) {
                Some(ev) => events[ev].1 = Some(i),
                None => events.push((None, Some(i))),
            }
        }
    }
    events
}

/// Encode a change batch as JSON messages of `mode`, keyed by `key_cols`.
pub fn encode(changes: &Changes, mode: SinkMode, key_cols: &[usize]) -> Result<Vec<OutMessage>> {
    SinkEncoder::json(mode, key_cols.to_vec()).encode(changes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn text(b: &Option<Vec<u8>>) -> Option<&str> {
        b.as_deref().map(|b| std::str::from_utf8(b).unwrap())
    }

    fn changes(keys: &[&str], counts: &[i64], weights: &[i64]) -> Changes {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(counts.to_vec())),
            ],
        )
        .unwrap();
        Changes::with_weights(batch, Int64Array::from(weights.to_vec()))
    }

    #[test]
    fn upsert_writes_latest_rows_and_tombstones() {
        let c = changes(&["a", "a", "b", "c"], &[1, 2, 5, 7], &[-1, 1, 1, -1]);
        let out = encode(&c, SinkMode::Upsert, &[0]).unwrap();
        let got: Vec<(Option<&str>, Option<&str>)> =
            out.iter().map(|m| (text(&m.key), text(&m.value))).collect();
        assert_eq!(
            got,
            vec![
                (Some(r#"{"k":"a"}"#), Some(r#"{"k":"a","n":2}"#)),
                (Some(r#"{"k":"b"}"#), Some(r#"{"k":"b","n":5}"#)),
                (Some(r#"{"k":"c"}"#), None),
            ]
        );
    }

    #[test]
    fn changelog_pairs_updates_by_key() {
        let c = changes(&["a", "a", "b", "c"], &[1, 2, 5, 7], &[-1, 1, 1, -1]);
        let out = encode(&c, SinkMode::Changelog, &[0]).unwrap();
        let values: Vec<&str> = out.iter().filter_map(|m| text(&m.value)).collect();
        assert_eq!(
            values,
            vec![
                r#"{"op":"u","before":{"k":"a","n":1},"after":{"k":"a","n":2}}"#,
                r#"{"op":"c","before":null,"after":{"k":"b","n":5}}"#,
                r#"{"op":"d","before":{"k":"c","n":7},"after":null}"#,
            ]
        );
        assert_eq!(text(&out[0].key), Some(r#"{"k":"a"}"#));
    }

    #[test]
    fn append_only_writes_rows() {
        let c = changes(&["a"], &[1], &[1]);
        let out = encode(&c, SinkMode::AppendOnly, &[]).unwrap();
        assert_eq!(
            out,
            vec![OutMessage {
                key: None,
                value: Some(br#"{"k":"a","n":1}"#.to_vec())
            }]
        );
    }
}
