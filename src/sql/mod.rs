//! SQL front end: tokens → typed [`Statement`]s, and the window TVF rewrite.

pub mod access;
pub mod canonical;
pub mod catalog_queries;
pub mod column_names;
pub mod complexity;
pub mod copy;
pub mod cursor;
pub mod literals;
pub mod names;
pub mod statement;
pub mod tokens;
pub mod unnest;
pub mod window;

pub use statement::{
    parse, CreateSink, CreateStream, CreateView, EmitMode, ObjectKind, Statement, WatermarkDef,
};
