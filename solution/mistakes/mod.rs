//! placeholder
pub struct Mistake { pub answers: &'static dyn crate::checks::Answers }
pub const ALL: &[Mistake] = &[];
