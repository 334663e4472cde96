//! Private data for every test: a Postgres schema with a seeded `users`
//! table, and a Redis key prefix, both invisible to learner code.
//!
//! Learner code writes `users` and `user:1`. An isolated lab's connections
//! start with `search_path` set to its schema (a connection option, so it
//! costs no round trip), and its `Cache` prefixes every key.
//!
//! Clean-up has to survive a run that was SIGKILLed halfway, so liveness is
//! left to Postgres: each process holds a session advisory lock on its run id
//! for as long as it lives. At start-up, a process sweeps the schemas and key
//! spaces of every run whose lock it can take, because that run's process is
//! gone (the idea of `sqlx::test`'s sweep, made safe for concurrent runs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use postgres::{Client, NoTls};

use super::cache::open;
use super::connect::bounded;
use super::{CONNECT_TIMEOUT, Error, Result, Service};

/// Advisory-lock class shared by all lab runs ("lab" in ASCII).
const LOCK_CLASS: i32 = 0x6c_61_62;
const RUNS_KEY: &str = "lab:runs";
pub(crate) const SEED_SQL: &str = include_str!("../../seed.sql");

/// One schema + key prefix, dropped with the lab that owns it.
pub(crate) struct Space {
    pub(crate) name: String,
    pub(crate) prefix: String,
    owner: bool,
}

struct Run {
    id: u32,
    seq: AtomicU64,
    admin: Mutex<Client>,
    db_url: String,
    redis: redis::Client,
    redis_url: String,
}

static RUN: Mutex<Option<&'static Run>> = Mutex::new(None);

pub(crate) fn connect_admin(db_url: &str) -> Result<Client> {
    let config = super::pg_config(db_url, None)?;
    bounded(CONNECT_TIMEOUT, move || config.connect(NoTls))
        .map_err(|e| Error::unreachable(Service::Postgres, db_url, e))
}

fn run(db_url: &str, redis_url: &str) -> Result<&'static Run> {
    let mut slot = RUN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(run) = *slot {
        return Ok(run);
    }
    let mut admin = connect_admin(db_url)?;
    let redis = redis::Client::open(redis_url).map_err(|e| Error::redis(redis_url, &e))?;
    let id = loop {
        let candidate =
            (std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), std::process::id())
                as u32)
                & 0x7fff_ffff;
        let row = admin
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LOCK_CLASS, &(candidate as i32)],
            )
            .map_err(|e| Error::postgres(db_url, &e))?;
        if row.get::<_, bool>(0) {
            break candidate;
        }
    };
    let run: &'static Run = Box::leak(Box::new(Run {
        id,
        seq: AtomicU64::new(0),
        admin: Mutex::new(admin),
        db_url: db_url.to_string(),
        redis,
        redis_url: redis_url.to_string(),
    }));
    let mut conn = run.redis_conn()?;
    redis::cmd("SADD")
        .arg(RUNS_KEY)
        .arg(format!("{id:08x}"))
        .query::<i64>(&mut conn)
        .map_err(|e| Error::redis(redis_url, &e))?;
    run.sweep()?;
    *slot = Some(run);
    Ok(run)
}

impl Run {
    fn admin(&self) -> MutexGuard<'_, Client> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn redis_conn(&self) -> Result<redis::Connection> {
        open(&self.redis, CONNECT_TIMEOUT)
            .map_err(|e| Error::unreachable(Service::Redis, &self.redis_url, e))
    }

    /// Runs housekeeping SQL. If the server restarted (or killed our
    /// session) since the last use, reconnects once, takes this run's
    /// advisory lock again (a restart released it), and retries.
    fn housekeeping(&self, sql: &str) -> Result<()> {
        let mut admin = self.admin();
        match admin.batch_execute(sql) {
            Err(e) if super::db::is_connection_loss(&e) => {
                let mut fresh = connect_admin(&self.db_url)?;
                fresh
                    .query_one(
                        "SELECT pg_try_advisory_lock($1, $2)",
                        &[&LOCK_CLASS, &(self.id as i32)],
                    )
                    .map_err(|e| self.pg(e))?;
                *admin = fresh;
                admin.batch_execute(sql).map_err(|e| self.pg(e))
            }
            other => other.map_err(|e| self.pg(e)),
        }
    }

    fn pg(&self, e: postgres::Error) -> Error {
        Error::postgres(&self.db_url, &e)
    }

    /// Drops the schemas and keys of every run whose process is gone.
    fn sweep(&self) -> Result<()> {
        let mut admin = self.admin();
        let mut ids: Vec<u32> = admin
            .query(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'lab\\_%\\_%'",
                &[],
            )
            .map_err(|e| self.pg(e))?
            .iter()
            .filter_map(|row| parse_run_id(row.get::<_, &str>(0).strip_prefix("lab_")?))
            .collect();
        let mut redis = self.redis_conn()?;
        let listed: Vec<String> = redis::cmd("SMEMBERS")
            .arg(RUNS_KEY)
            .query(&mut redis)
            .map_err(|e| Error::redis(&self.redis_url, &e))?;
        ids.extend(listed.iter().filter_map(|s| parse_run_id(s)));
        ids.sort_unstable();
        ids.dedup();
        for id in ids.into_iter().filter(|&id| id != self.id) {
            let lock = [
                &LOCK_CLASS as &(dyn postgres::types::ToSql + Sync),
                &(id as i32),
            ];
            let dead: bool = admin
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &lock)
                .map_err(|e| self.pg(e))?
                .get(0);
            if !dead {
                continue;
            }
            let schemas = admin
                .query(
                    "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
                    &[&format!("lab\\_{id:08x}\\_%")],
                )
                .map_err(|e| self.pg(e))?;
            for row in schemas {
                let name: String = row.get(0);
                admin
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .map_err(|e| self.pg(e))?;
            }
            delete_matching(&mut redis, &format!("lab:{id:08x}:*"))
                .map_err(|e| Error::redis(&self.redis_url, &e))?;
            let _: i64 = redis::cmd("SREM")
                .arg(RUNS_KEY)
                .arg(format!("{id:08x}"))
                .query(&mut redis)
                .map_err(|e| Error::redis(&self.redis_url, &e))?;
            admin
                .query_one("SELECT pg_advisory_unlock($1, $2)", &lock)
                .map_err(|e| self.pg(e))?;
        }
        Ok(())
    }
}

fn parse_run_id(s: &str) -> Option<u32> {
    let hex = s.get(..8)?;
    u32::from_str_radix(hex, 16).ok()
}

fn delete_matching(conn: &mut redis::Connection, pattern: &str) -> redis::RedisResult<()> {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(conn)?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query::<i64>(conn)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

impl Space {
    /// Creates a private schema, seeded from `seed.sql`, and a key prefix.
    pub(crate) fn create(db_url: &str, redis_url: &str) -> Result<Space> {
        let run = run(db_url, redis_url)?;
        let n = run.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("lab_{:08x}_{n}", run.id);
        let prefix = format!("lab:{:08x}:{n}:", run.id);
        run.housekeeping(&format!(
            "CREATE SCHEMA \"{name}\"; SET search_path TO \"{name}\"; {SEED_SQL}; RESET search_path;"
        ))?;
        Ok(Space {
            name,
            prefix,
            owner: true,
        })
    }

    /// Joins a space created by another process (the cross-process herd
    /// check); it is not dropped when this lab is.
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
            owner: false,
        })
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        if std::thread::panicking() && std::env::var_os("LAB_KEEP_FAILED").is_some() {
            eprintln!(
                "labkit: LAB_KEEP_FAILED is set, keeping schema {} and keys {}* for debugging \
                 (swept by the first run after this process exits)",
                self.name, self.prefix
            );
            return;
        }
        let Some(run) = *RUN.lock().unwrap_or_else(|e| e.into_inner()) else {
            return;
        };
        // Best effort: whatever fails here is swept by the next run.
        let _ = run.housekeeping(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        if let Ok(mut conn) = run.redis_conn() {
            let _ = delete_matching(&mut conn, &format!("{}*", self.prefix));
        }
    }
}

/// Applies `seed.sql` to the shared database when `users` is missing.
pub(crate) fn seed_shared(db_url: &str) -> Result<()> {
    let mut client = connect_admin(db_url)?;
    let pg = |e: postgres::Error| Error::postgres(db_url, &e);
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
    tx.commit().map_err(pg)
}
