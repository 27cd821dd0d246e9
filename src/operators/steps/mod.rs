//! Filters, projections and UNNEST: stateless steps evaluated with
//! DataFusion physical expressions, one batch at a time (see
//! [`crate::operators::steps`]). Weights ride along, so the same steps serve
//! append-only and updating streams.

mod step;

pub use step::*;

use super::{Output, StreamOperator};
use crate::error::Result;
use crate::types::Changes;

/// A run of stateless steps.
pub struct Steps {
    /// The steps, applied in order.
    steps: Vec<Step>,
}

impl Steps {
    /// An operator applying `steps` in order.
    pub fn new(steps: Vec<Step>) -> Self {
        Steps { steps }
    }
}

impl StreamOperator for Steps {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        out.emit(apply_steps(&self.steps, changes)?);
        Ok(())
    }

    fn explain(&self) -> String {
        let steps: Vec<String> = self.steps.iter().map(|s| format!("{s:?}")).collect();
        steps.join("\n")
    }
}

/// `UNION ALL`: rows of every input port pass as they come; the watermark
/// is the least of the ports' (the default merge).
pub struct Union {
    /// Number of inputs (for EXPLAIN).
    inputs: usize,
}

impl Union {
    /// A union of `inputs` ports.
    pub fn new(inputs: usize) -> Self {
        Union { inputs }
    }
}

impl StreamOperator for Union {
    fn on_data(&mut self, _port: usize, changes: Changes, out: &mut Output) -> Result<()> {
        out.emit(changes);
        Ok(())
    }

    fn explain(&self) -> String {
        format!(
            "Union: {} inputs, rows as they come; watermark the least of theirs",
            self.inputs
        )
    }
}
