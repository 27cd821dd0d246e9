//! The bottom layer: the messages streams carry between sources, operators
//! and views ([`Changes`], [`Watermark`], [`Message`]), the publisher that
//! fans a stream out to its subscribers, and batch helpers.

pub mod detach;
pub mod message;
pub mod output;
pub mod projection;
pub mod publish;
pub mod rate;
pub mod time;

pub use message::{Changes, EventTime, Message, Watermark};
pub use output::{OutputTime, ViewOutput};
