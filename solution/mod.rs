//! The reference answers and both catalogues, as one module tree: the
//! grader mounts this file in maintainer mode (`--features solution`). The
//! `solution` binary, the benchmark and the load check mount `reference.rs`
//! alone.
//!
//! # Layout
//!
//! - `reference.rs`: the reference answers.
//! - `designs/`: correct answers of other designs, which the grader must
//!   accept.
//! - `mistakes/`: answers with one classic mistake each, which the grader
//!   must reject, with the hint meant for it.
//!
//! A catalogue entry replaces only the functions that make it what it is and
//! takes the others from `reference::ANSWERS`.

pub mod designs;
pub mod mistakes;
pub mod reference;
