//! One set of the lab's TODO functions, as a value, and the one list of
//! those functions.
//!
//! The grader, the catalogues and `solution --compare` all run "answers":
//! yours in `src/lib.rs`, the reference in `solution/reference.rs`, or a
//! catalogue entry that differs from the reference in one function. A plain
//! struct of function pointers says exactly that, and an entry is written
//! with struct update syntax: `Answers { get_user_profile: mine,
//! ..reference::ANSWERS }`.
//!
//! `with_answer_functions!` below names each TODO function once, with its
//! part and kind. Everything else is derived from that list: the fields of
//! [`Answers`], [`Answers::LEARNER`], [`Function`] and [`Function::ALL`], the
//! `answers!` macro that builds the reference's `ANSWERS`, and the functions
//! `scripts/grade-answers` swaps in (it reads the list's lines). Counts in
//! the docs are checked against it by the maintainer command.

use crate::User;
use crate::labkit::{Lab, Result};

/// A read: `get_user_profile` and its variants.
pub type Read = fn(&Lab, i32) -> Result<Option<User>>;
/// An update: `update_user_plan` and its variants.
pub type Update = fn(&Lab, i32, &str) -> Result<()>;

/// A TODO function's pointer, called the same way whatever its kind.
trait Callable {
    /// A read returns its user, an update `None`; `plan` is ignored by reads.
    fn call_with(self, lab: &Lab, user_id: i32, plan: &str) -> Result<Option<User>>;
}

impl Callable for Read {
    fn call_with(self, lab: &Lab, user_id: i32, _plan: &str) -> Result<Option<User>> {
        self(lab, user_id)
    }
}

impl Callable for Update {
    fn call_with(self, lab: &Lab, user_id: i32, plan: &str) -> Result<Option<User>> {
        self(lab, user_id, plan).map(|()| None)
    }
}

/// The one list of the TODO functions, in the order of `src/lib.rs`: `part
/// N: Read|Update name / Variant;`. It hands the list to the macro named in
/// brackets, after the tokens that follow it (`scripts/grade-answers` reads
/// these lines too).
#[macro_export]
#[doc(hidden)]
macro_rules! with_answer_functions {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { ($($args)*)
            part 1: Read get_user_profile / GetUserProfile;
            part 1: Update update_user_plan / UpdateUserPlan;
            part 2: Read get_user_profile_singleflight / GetUserProfileSingleflight;
            part 3: Read get_user_profile_leased / GetUserProfileLeased;
            part 3: Update update_user_plan_leased / UpdateUserPlanLeased;
            part 4: Read get_user_profile_replicated / GetUserProfileReplicated;
            part 4: Update update_user_plan_replicated / UpdateUserPlanReplicated;
        }
    };
}

/// `answers!("name")`: an [`Answers`] of the TODO functions of that name
/// where it is called: the reference's `ANSWERS`, so that a new TODO
/// function needs no edit there beyond its body.
#[macro_export]
#[doc(hidden)]
macro_rules! answers {
    ($label:expr) => {
        $crate::with_answer_functions! { [$crate::answers_of_list] $label }
    };
}

/// [`answers!`]'s work, given the list.
#[macro_export]
#[doc(hidden)]
macro_rules! answers_of_list {
    (($label:expr) $( part $part:literal: $kind:ident $name:ident / $variant:ident; )*) => {
        $crate::labkit::testkit::Answers {
            name: $label,
            $( $name, )*
        }
    };
}

/// Generates, from the list, what follows from it here.
macro_rules! answer_functions {
    (() $( part $part:literal: $kind:ident $name:ident / $variant:ident; )*) => {
        /// The TODO functions of `src/lib.rs`, and a name to find them by (a
        /// child process is told the name, not the functions).
        #[derive(Clone, Copy)]
        pub struct Answers {
            pub name: &'static str,
            $( pub $name: $kind, )*
        }

        impl Answers {
            /// Your answers, in `src/lib.rs`.
            pub const LEARNER: Answers = Answers {
                name: "src/lib.rs",
                $( $name: crate::$name, )*
            };
        }

        /// One of the TODO functions, by name: what a child process is told
        /// to run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum Function {
            $( $variant, )*
        }

        impl Function {
            /// Every TODO function, in the order of `src/lib.rs`.
            pub const ALL: &[Function] = &[ $( Function::$variant, )* ];

            /// Its name in `src/lib.rs`.
            pub fn name(self) -> &'static str {
                match self {
                    $( Function::$variant => stringify!($name), )*
                }
            }

            /// The part it belongs to.
            pub fn part(self) -> u8 {
                match self {
                    $( Function::$variant => $part, )*
                }
            }

            /// Runs this function of `answers`: a read returns its user, an
            /// update `None`. (`plan` is ignored by reads.)
            pub fn call(
                self,
                answers: &Answers,
                lab: &Lab,
                user_id: i32,
                plan: &str,
            ) -> Result<Option<User>> {
                match self {
                    $( Function::$variant => answers.$name.call_with(lab, user_id, plan), )*
                }
            }
        }
    };
}

crate::with_answer_functions! { [answer_functions] }

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Answers({})", self.name)
    }
}
