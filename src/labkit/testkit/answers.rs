//! One set of the lab's TODO functions, as a value.
//!
//! The grader, the catalogues and `solution --compare` all run "answers":
//! yours in `src/lib.rs`, the reference in `solution/reference.rs`, or a
//! catalogue entry that differs from the reference in one function. A plain
//! struct of function pointers says exactly that, and an entry is written
//! with struct update syntax: `Answers { get_user_profile: mine,
//! ..reference::ANSWERS }`.

use crate::User;
use crate::labkit::{Lab, Result};

/// A read: `get_user_profile` and its variants.
pub type Read = fn(&Lab, i32) -> Result<Option<User>>;
/// An update: `update_user_plan` and its variants.
pub type Update = fn(&Lab, i32, &str) -> Result<()>;

/// The TODO functions of `src/lib.rs`, and a name to find them by (a child
/// process is told the name, not the functions).
#[derive(Clone, Copy)]
pub struct Answers {
    pub name: &'static str,
    pub get_user_profile: Read,
    pub update_user_plan: Update,
    pub get_user_profile_singleflight: Read,
    pub get_user_profile_leased: Read,
    pub update_user_plan_leased: Update,
    pub get_user_profile_replicated: Read,
    pub update_user_plan_replicated: Update,
}

impl Answers {
    /// Your answers, in `src/lib.rs`.
    pub const LEARNER: Answers = Answers {
        name: "src/lib.rs",
        get_user_profile: crate::get_user_profile,
        update_user_plan: crate::update_user_plan,
        get_user_profile_singleflight: crate::get_user_profile_singleflight,
        get_user_profile_leased: crate::get_user_profile_leased,
        update_user_plan_leased: crate::update_user_plan_leased,
        get_user_profile_replicated: crate::get_user_profile_replicated,
        update_user_plan_replicated: crate::update_user_plan_replicated,
    };
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Answers({})", self.name)
    }
}

/// One of the TODO functions, by name: what a child process is told to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Function {
    GetUserProfile,
    UpdateUserPlan,
    GetUserProfileSingleflight,
    GetUserProfileLeased,
    UpdateUserPlanLeased,
    GetUserProfileReplicated,
    UpdateUserPlanReplicated,
}

impl Function {
    /// Runs this function of `answers`: a read returns its user, an update
    /// `None`. (`plan` is ignored by reads.)
    pub fn call(
        self,
        answers: &Answers,
        lab: &Lab,
        user_id: i32,
        plan: &str,
    ) -> Result<Option<User>> {
        let update = |f: Update| f(lab, user_id, plan).map(|()| None);
        match self {
            Function::GetUserProfile => (answers.get_user_profile)(lab, user_id),
            Function::UpdateUserPlan => update(answers.update_user_plan),
            Function::GetUserProfileSingleflight => {
                (answers.get_user_profile_singleflight)(lab, user_id)
            }
            Function::GetUserProfileLeased => (answers.get_user_profile_leased)(lab, user_id),
            Function::UpdateUserPlanLeased => update(answers.update_user_plan_leased),
            Function::GetUserProfileReplicated => {
                (answers.get_user_profile_replicated)(lab, user_id)
            }
            Function::UpdateUserPlanReplicated => update(answers.update_user_plan_replicated),
        }
    }
}
