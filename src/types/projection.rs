//! A subscriber's view of a stream whose columns changed under it.
//!
//! `ALTER SOURCE … ADD COLUMN` gives a source a new schema while views built
//! for the old one keep reading it: their subscription carries a
//! [`Projection`] that maps each row batch of the new schema back to the old
//! one. Watermarks and barriers pass as they are.

use std::sync::Arc;

use super::message::{Changes, Message};
use crate::error::Result;

/// Column indices into the publisher's schema, in the subscriber's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection(Arc<[usize]>);

impl Projection {
    /// A projection taking the columns at `indices`.
    pub fn new(indices: Vec<usize>) -> Self {
        Projection(indices.into())
    }

    /// The column indices.
    pub fn indices(&self) -> &[usize] {
        &self.0
    }

    /// This projection (over an older schema) applied after `outer` (which
    /// maps a newer schema to that older one): one projection from the newer
    /// schema. `None` if an index is out of range.
    pub fn after(&self, outer: &Projection) -> Option<Projection> {
        self.0
            .iter()
            .map(|&i| outer.0.get(i).copied())
            .collect::<Option<Vec<usize>>>()
            .map(Projection::new)
    }

    /// `msg` as the subscriber sees it: data rows projected, the rest as is.
    pub fn apply(&self, msg: &Message) -> Result<Message> {
        Ok(match msg {
            Message::Data(c) => Message::Data(Changes {
                batch: c.batch.project(&self.0)?,
                weights: c.weights.clone(),
            }),
            other => other.clone(),
        })
    }
}

/// `msg` for a subscriber with `projection` (`None`: the stream's own schema).
pub fn for_subscriber(msg: &Message, projection: Option<&Projection>) -> Result<Message> {
    match projection {
        None => Ok(msg.clone()),
        Some(p) => p.apply(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Watermark;
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::record_batch::RecordBatch;

    #[test]
    fn projects_data_and_composes() {
        let col = |v: i64| Arc::new(Int64Array::from(vec![v])) as Arc<dyn Array>;
        let batch =
            RecordBatch::try_from_iter(vec![("a", col(1)), ("x", col(2)), ("b", col(3))]).unwrap();
        let p = Projection::new(vec![0, 2]);
        let Message::Data(c) = p.apply(&Message::Data(Changes::inserts(batch))).unwrap() else {
            panic!("not data")
        };
        assert_eq!(c.batch.schema().field(1).name(), "b");
        assert!(matches!(
            p.apply(&Message::Watermark(Watermark::EventTime(3)))
                .unwrap(),
            Message::Watermark(Watermark::EventTime(3))
        ));
        // [a, b] then [a, y, x, b]: a second column added before b.
        let older = Projection::new(vec![1]);
        assert_eq!(older.after(&p).unwrap().indices(), &[2]);
        assert!(Projection::new(vec![5]).after(&p).is_none());
    }
}
