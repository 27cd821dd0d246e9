//! Streaming execution: messages, operators and the tasks that run them.

pub mod agg_state;
pub mod aggregate;
pub mod detach;
pub mod join;
pub mod message;
pub mod publish;
pub mod session;
pub mod stateless;
pub mod top_n;
pub mod window;

pub use message::{Changes, EventTime, Message, Watermark};
