//! Private data for every test: a Postgres schema with a seeded `users`
//! table, and a Redis key prefix, both invisible to learner code.
//!
//! Learner code writes `users` and `user:1`. An isolated lab's connections
//! start with `search_path` set to its schema, and its `Cache` prefixes every
//! key.
//!
//! Clean-up has to survive a run that was SIGKILLed halfway, so liveness is
//! left to Postgres: each process holds a session advisory lock on its run id
//! for as long as it lives. At start-up, a process sweeps the schemas and key
//! spaces of every run whose lock it can take, because that run's process is
//! gone (the idea of `sqlx::test`'s sweep, made safe for concurrent runs). A
//! sweeper holds the dead run's lock while it sweeps, so two sweepers never
//! work on one run, and a waiter on that lock knows when a sweep is over.
//!
//! A run is judged only where it lives. Advisory locks belong to one database
//! of one Postgres server, but one Redis may serve runs on several (a
//! classroom's shared Redis, the replica pair beside the default Postgres,
//! two databases on one server): a live run elsewhere would look dead from
//! here. So every run registers in Redis with its *scope*, the Postgres
//! server (its system identifier) and database it lives in, and a sweeper
//! touches the keys of runs of its own scope only; their schemas live in its
//! own database anyway. Run ids are claimed in the registry (`HSETNX`), so
//! two live runs never share a key prefix, whichever Postgres they use.
//! (The alternative, a liveness key in Redis that each run renews, would need
//! a renewing thread in every process, and would misjudge a run whose schemas
//! live in a Postgres that another Redis serves.)

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::Client;

use super::Result;
use super::config::pg_config;
use super::error::{Error, Service};
use super::redis_conn::{RedisConn, RedisConnector};

/// Advisory-lock class shared by all lab runs ("lab" in ASCII).
const LOCK_CLASS: i32 = 0x6c_61_62;
/// The registry of runs: a hash from run name to the run's scope. (Runs
/// before scopes used a set, `lab:runs`, which is left alone.)
const REGISTRY: &str = "lab:registry";
pub(crate) const SEED_SQL: &str = include_str!("../../seed.sql");

/// One schema + key prefix, dropped with the lab that owns it.
pub(crate) struct Space {
    pub(crate) name: String,
    pub(crate) prefix: String,
    /// The primary's WAL position once the space was created: a replica
    /// has the space once it has replayed this far.
    pub(crate) lsn: Option<String>,
    /// The Redis holding the space's keys, when it is not the run's (the
    /// benchmark's lab on a cluster).
    keys_on: Option<String>,
    owner: bool,
}

struct Run {
    id: u32,
    /// Where the run lives: see [`scope_of`].
    scope: String,
    seq: AtomicU64,
    admin: Mutex<Client>,
    db_url: String,
    redis: RedisConnector,
}

static RUN: Mutex<Option<&'static Run>> = Mutex::new(None);
/// Set by the grader for `LAB_KEEP_FAILED`: spaces outlive their labs until
/// the check's verdict is known.
static KEEP: AtomicBool = AtomicBool::new(false);
static KEPT: Mutex<Vec<(String, String, Option<String>)>> = Mutex::new(Vec::new());
/// Spaces this process created and has not dropped in full: still owned by
/// a lab (held by a thread that is stuck, say), kept for inspection, being
/// dropped right now, or whose drop failed (Redis was down). While any is
/// left, [`finish`] keeps the run listed, so that the next run's sweep drops
/// what remains.
static LIVE: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn connect_admin(db_url: &str) -> Result<Client> {
    super::db::connect_client(
        pg_config(Service::Postgres, db_url, None)?,
        db_url,
        Service::Postgres,
    )
}

/// What can be done with a run's advisory lock.
enum RunLock {
    /// Take it if free; true if taken.
    Try,
    /// Wait for it (as long as the session's lock_timeout allows).
    Wait,
    Release,
}

fn run_lock(
    client: &mut Client,
    id: u32,
    how: RunLock,
) -> std::result::Result<bool, postgres::Error> {
    let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&LOCK_CLASS, &(id as i32)];
    match how {
        RunLock::Try => Ok(client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &params)?
            .get(0)),
        RunLock::Wait => client
            .execute("SELECT pg_advisory_lock($1, $2)", &params)
            .map(|_| true),
        RunLock::Release => Ok(client
            .query_one("SELECT pg_advisory_unlock($1, $2)", &params)?
            .get(0)),
    }
}

fn run(db_url: &str, redis_url: &str) -> Result<&'static Run> {
    let mut slot = RUN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(run) = *slot {
        return Ok(run);
    }
    let mut admin = connect_admin(db_url)?;
    let redis = RedisConnector::new(redis_url)?;
    let pg = |e| Error::postgres(db_url, e);
    let scope = scope_of(&mut admin).map_err(pg)?;
    let mut redis_conn = redis.open()?;
    let redis_err = |e| Error::redis(redis_url, e);
    let id = loop {
        let candidate =
            (std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), std::process::id())
                as u32)
                & 0x7fff_ffff;
        // Unique in this database while the process lives (the lock), and
        // unique in this Redis (the registry): another Postgres may have a
        // live run of the same id, which must not share our key prefix.
        if !run_lock(&mut admin, candidate, RunLock::Try).map_err(pg)? {
            continue;
        }
        let claimed: bool = redis::cmd("HSETNX")
            .arg(REGISTRY)
            .arg(run_name(candidate))
            .arg(&scope)
            .query(&mut redis_conn)
            .map_err(redis_err)?;
        if claimed {
            break candidate;
        }
        run_lock(&mut admin, candidate, RunLock::Release).map_err(pg)?;
    };
    let run: &'static Run = Box::leak(Box::new(Run {
        id,
        scope,
        seq: AtomicU64::new(0),
        admin: Mutex::new(admin),
        db_url: db_url.to_string(),
        redis,
    }));
    run.sweep()?;
    *slot = Some(run);
    Ok(run)
}

/// The run's scope: the Postgres server's system identifier and the
/// database, where its advisory lock (and so its liveness) can be judged.
/// A server that hides its identifier (some managed ones) is named by the
/// address and port it reports instead.
fn scope_of(admin: &mut Client) -> std::result::Result<String, postgres::Error> {
    let server: String = match admin.query_one(
        "SELECT system_identifier::text FROM pg_control_system()",
        &[],
    ) {
        Ok(row) => row.get(0),
        Err(_) => admin
            .query_one(
                "SELECT coalesce(host(inet_server_addr()), 'socket') || ':' || coalesce(inet_server_port(), 0)",
                &[],
            )?
            .get(0),
    };
    let database: String = admin
        .query_one("SELECT current_database()::text", &[])?
        .get(0);
    Ok(format!("{server}/{database}"))
}

fn run_name(id: u32) -> String {
    format!("{id:08x}")
}

fn parse_run_id(s: &str) -> Option<u32> {
    let hex = s.get(..8)?;
    u32::from_str_radix(hex, 16).ok()
}

impl Run {
    fn admin(&self) -> MutexGuard<'_, Client> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pg(&self, e: postgres::Error) -> Error {
        Error::postgres(&self.db_url, e)
    }

    fn redis_err(&self, e: redis::RedisError) -> Error {
        Error::redis(&self.redis.url, e)
    }

    /// Runs housekeeping SQL, and returns the primary's WAL position right
    /// after it. If the server restarted (or killed our session) since the
    /// last use, reconnects once, takes this run's advisory lock again (a
    /// restart released it), and retries.
    fn housekeeping(&self, sql: &str) -> Result<String> {
        let mut admin = self.admin();
        let run = |admin: &mut Client| -> std::result::Result<String, postgres::Error> {
            admin.batch_execute(sql)?;
            Ok(admin
                .query_one("SELECT pg_current_wal_lsn()::text", &[])?
                .get(0))
        };
        match run(&mut admin) {
            Err(e) if super::db::is_connection_loss(&e) => {
                let mut fresh = connect_admin(&self.db_url)?;
                run_lock(&mut fresh, self.id, RunLock::Try).map_err(|e| self.pg(e))?;
                *admin = fresh;
                run(&mut admin).map_err(|e| self.pg(e))
            }
            other => other.map_err(|e| self.pg(e)),
        }
    }

    /// Drops the schemas and keys of every run whose process is gone.
    fn sweep(&self) -> Result<()> {
        let mut admin = self.admin();
        let mut ids: Vec<u32> = admin
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'lab\\_%\\_%'",
                &[],
            )
            .map_err(|e| self.pg(e))?
            .iter()
            .filter_map(|row| parse_run_id(row.get::<_, &str>(0).strip_prefix("lab_")?))
            .collect();
        let mut redis = self.redis.open()?;
        let registry: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(REGISTRY)
            .query(&mut redis)
            .map_err(|e| self.redis_err(e))?;
        // Runs of other scopes are judged where they live, never here.
        let ours = |id: u32| registry.get(&run_name(id)) == Some(&self.scope);
        ids.extend(
            registry
                .iter()
                .filter(|(_, scope)| **scope == self.scope)
                .filter_map(|(name, _)| parse_run_id(name)),
        );
        ids.sort_unstable();
        ids.dedup();
        for id in ids.into_iter().filter(|&id| id != self.id) {
            // Taken: that run lives, or another process is sweeping it.
            if !run_lock(&mut admin, id, RunLock::Try).map_err(|e| self.pg(e))? {
                continue;
            }
            let swept = self.drop_run(&mut admin, &mut redis, id, ours(id));
            run_lock(&mut admin, id, RunLock::Release).map_err(|e| self.pg(e))?;
            swept?;
        }
        Ok(())
    }

    /// Drops every schema of run `id` and, when the registry has it in this
    /// run's scope (`keys`), its keys, then forgets it. A schema here whose
    /// id the registry gives another scope belongs to a run on another
    /// Redis: its keys are not in this one.
    fn drop_run(
        &self,
        admin: &mut Client,
        redis: &mut RedisConn,
        id: u32,
        keys: bool,
    ) -> Result<()> {
        let name = run_name(id);
        let schemas = admin
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
                &[&format!("lab\\_{name}\\_%")],
            )
            .map_err(|e| self.pg(e))?;
        for row in schemas {
            let schema: String = row.get(0);
            admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .map_err(|e| self.pg(e))?;
        }
        if keys {
            self.redis.delete_matching(&format!("lab:{name}:*"))?;
            redis::cmd("HDEL")
                .arg(REGISTRY)
                .arg(&name)
                .query::<i64>(redis)
                .map_err(|e| self.redis_err(e))?;
        }
        Ok(())
    }
}

impl Space {
    /// Creates a private schema, seeded from `seed.sql`, and a key prefix.
    pub(crate) fn create(db_url: &str, redis_url: &str) -> Result<Space> {
        Space::create_on(db_url, redis_url, None)
    }

    /// [`Space::create`], with the keys on another Redis than the run's.
    pub(crate) fn create_on(db_url: &str, redis_url: &str, keys_on: Option<&str>) -> Result<Space> {
        let run = run(db_url, redis_url)?;
        let n = run.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("lab_{}_{n}", run_name(run.id));
        let prefix = format!("lab:{}:{n}:", run_name(run.id));
        let lsn = run.housekeeping(&format!(
            "CREATE SCHEMA \"{name}\"; SET search_path TO \"{name}\"; {SEED_SQL}; RESET search_path;"
        ))?;
        LIVE.fetch_add(1, Ordering::SeqCst);
        Ok(Space {
            name,
            prefix,
            lsn: Some(lsn),
            keys_on: keys_on.map(str::to_string),
            owner: true,
        })
    }

    /// Joins a space created by another process (the cross-process herd); it
    /// is not dropped when this lab is.
    pub(crate) fn attach(name: &str) -> Result<Space> {
        let rest = name
            .strip_prefix("lab_")
            .and_then(|r| r.split_once('_'))
            .filter(|(id, n)| {
                id.len() == 8 && parse_run_id(id).is_some() && n.parse::<u64>().is_ok()
            });
        let Some((id, n)) = rest else {
            return Err(Error::InvalidInput(format!(
                "{name:?} is not a lab space name"
            )));
        };
        Ok(Space {
            name: name.to_string(),
            prefix: format!("lab:{id}:{n}:"),
            lsn: None,
            keys_on: None,
            owner: false,
        })
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        if KEEP.load(Ordering::SeqCst) {
            KEPT.lock().unwrap_or_else(|e| e.into_inner()).push((
                self.name.clone(),
                self.prefix.clone(),
                self.keys_on.clone(),
            ));
            return;
        }
        drop_space(&self.name, &self.prefix, self.keys_on.as_deref());
    }
}

/// Best effort: whatever fails here is swept by the next run (and every
/// key labkit writes expires anyway).
fn drop_space(name: &str, prefix: &str, keys_on: Option<&str>) {
    let Some(run) = *RUN.lock().unwrap_or_else(|e| e.into_inner()) else {
        return;
    };
    let schema = run.housekeeping(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
    let pattern = format!("{prefix}*");
    let keys = match keys_on {
        Some(url) => RedisConnector::new(url).and_then(|r| r.delete_matching(&pattern)),
        None => run.redis.delete_matching(&pattern),
    };
    if schema.is_ok() && keys.is_ok() {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// From now on, spaces outlive their labs until [`release_kept`].
pub(crate) fn keep_spaces() {
    KEEP.store(true, Ordering::SeqCst);
}

/// The spaces kept so far: (schema, key prefix). With `drop: true` they are
/// dropped now; otherwise they stay for inspection, and the first run after
/// this process has exited sweeps them.
pub(crate) fn release_kept(drop: bool) -> Vec<(String, String)> {
    let kept = std::mem::take(&mut *KEPT.lock().unwrap_or_else(|e| e.into_inner()));
    if drop {
        for (name, prefix, keys_on) in &kept {
            drop_space(name, prefix, keys_on.as_deref());
        }
    }
    kept.into_iter()
        .map(|(name, prefix, _)| (name, prefix))
        .collect()
}

/// Forgets this process's run in Redis, so that nobody sweeps it later. Its
/// spaces are dropped with their labs; the advisory lock goes with the
/// process.
pub(crate) fn finish() {
    let Some(run) = *RUN.lock().unwrap_or_else(|e| e.into_inner()) else {
        return;
    };
    // A space not dropped in full stays the next run's to sweep: forgetting
    // the run now would leave its keys until their TTL. (Exiting while a
    // thread drops a lab can cut the drop short after its schema is gone.)
    if LIVE.load(Ordering::SeqCst) > 0 {
        return;
    }
    if let Ok(mut conn) = run.redis.open() {
        let _ = redis::cmd("HDEL")
            .arg(REGISTRY)
            .arg(run_name(run.id))
            .query::<i64>(&mut conn);
    }
}

/// Waits until nobody holds the advisory lock of the run that owns space
/// `name` (it is dead, and no sweep of it is in progress), for at most
/// `timeout`. False on timeout.
pub(crate) fn wait_for_run_lock(db_url: &str, name: &str, timeout: Duration) -> Result<bool> {
    let space = Space::attach(name)?;
    let id = parse_run_id(&space.prefix["lab:".len()..]).expect("attach checked the name");
    let mut client = connect_admin(db_url)?;
    let pg = |e| Error::postgres(db_url, e);
    client
        .batch_execute(&format!(
            "SET lock_timeout = {}",
            timeout.as_millis().max(1)
        ))
        .map_err(pg)?;
    match run_lock(&mut client, id, RunLock::Wait) {
        Ok(_) => {
            run_lock(&mut client, id, RunLock::Release).map_err(pg)?;
            Ok(true)
        }
        // 55P03: lock_not_available (the lock_timeout passed).
        Err(e) if e.code().is_some_and(|c| c.code() == "55P03") => Ok(false),
        Err(e) => Err(pg(e)),
    }
}

/// Applies `seed.sql` to the shared database when `users` is missing, and
/// returns the primary's WAL position after it (see [`Space::lsn`]).
pub(crate) fn seed_shared(db_url: &str) -> Result<String> {
    let mut client = connect_admin(db_url)?;
    let pg = |e| Error::postgres(db_url, e);
    let mut tx = client.transaction().map_err(pg)?;
    // Two first runs at once must not both create the table.
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_CLASS])
        .map_err(pg)?;
    let missing: bool = tx
        .query_one("SELECT to_regclass('users') IS NULL", &[])
        .map_err(pg)?
        .get(0);
    if missing {
        tx.batch_execute(SEED_SQL).map_err(pg)?;
    }
    tx.commit().map_err(pg)?;
    Ok(client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .map_err(pg)?
        .get(0))
}

// Service-free: `cargo test --lib` (docs/MAINTAINERS.md).
#[cfg(test)]
mod tests {
    use super::{Space, parse_run_id, run_name};
    use crate::labkit::Error;

    #[test]
    fn a_run_id_survives_its_name() {
        for id in [0, 1, 0xdead_beef, u32::MAX] {
            let name = run_name(id);
            assert_eq!(name.len(), 8, "{name}");
            assert_eq!(parse_run_id(&name), Some(id));
        }
        assert_eq!(run_name(0x2a), "0000002a");
    }

    #[test]
    fn parse_run_id_reads_eight_hex_digits_at_the_start() {
        // A space's schema, after `lab_`: the run, then the space's number.
        assert_eq!(parse_run_id("0000002a_7"), Some(0x2a));
        assert_eq!(parse_run_id("DEADBEEF"), Some(0xdead_beef));
        assert_eq!(parse_run_id("0000002"), None, "too short");
        assert_eq!(parse_run_id("0000002g_1"), None, "not hex");
        assert_eq!(parse_run_id("0000000é"), None, "not a char boundary");
        assert_eq!(parse_run_id(""), None);
    }

    #[test]
    fn attach_takes_a_space_name_and_derives_its_key_prefix() {
        let space = Space::attach("lab_0000002a_7").unwrap();
        assert_eq!(space.name, "lab_0000002a_7");
        assert_eq!(space.prefix, "lab:0000002a:7:");
        assert_eq!(space.lsn, None);
        assert!(
            !space.owner,
            "an attached space is not dropped with the lab"
        );
        for name in [
            "lab_0000002a",
            "lab_0000002a_",
            "lab_0000002a_x",
            "lab_2a_7",
            "lab_0000002g_7",
            "lab_0000002a0_7",
            "lbx_0000002a_7",
            "users",
        ] {
            match Space::attach(name) {
                Err(Error::InvalidInput(why)) => assert!(why.contains(name), "{why}"),
                Err(e) => panic!("{name}: {e}"),
                Ok(space) => panic!("{name}: attached as {:?}", space.name),
            }
        }
    }
}
