//! `Cache`: pooled Redis holding JSON values under the learner's keys.
//!
//! Keys are prefixed with the lab's private key space (empty for
//! `Lab::connect`), so a learner writes `user:1` and sees `user:1`, while
//! parallel tests never share an entry. The Part 3 lease commands live in
//! `lease.rs`.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use redis::ConnectionLike;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Result;
use super::config::DEFAULT_REDIS_URL;
use super::connect::{CONNECT_TIMEOUT, bounded};
use super::diagnose;
use super::error::{Cause, Error, Service, mask_password};
use super::pool::{Attempt, Connector, Pool};
use super::testkit::hooks::{Action, Hooks, Phase};
use super::tls;

/// Any single Redis command that takes longer than this fails.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a single Redis, or to a Redis Cluster (which routes each
/// command to the master that owns its key's slot, and follows MOVED).
pub enum RedisConn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            RedisConn::Single(c) => c.req_command(cmd),
            RedisConn::Cluster(c) => c.req_command(cmd),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
    fn check_connection(&mut self) -> bool {
        match self {
            RedisConn::Single(c) => c.check_connection(),
            RedisConn::Cluster(c) => c.check_connection(),
        }
    }
    fn is_open(&self) -> bool {
        match self {
            RedisConn::Single(c) => c.is_open(),
            RedisConn::Cluster(c) => c.is_open(),
        }
    }
}

/// Opens Redis connections, each bounded as a whole, with I/O timeouts.
///
/// Whether `REDIS_URL` names a single Redis or a node of a Redis Cluster is
/// asked once (`INFO cluster` says `cluster_enabled:1`), on the first
/// connect; the learner's code and keys are the same either way.
pub(crate) struct RedisConnector {
    client: redis::Client,
    pub(crate) url: String,
    /// `rediss://...?sslrootcert=FILE`: the roots to trust (see `tls.rs`).
    roots: Option<redis::TlsCertificates>,
    cluster: OnceLock<Option<Cluster>>,
}

/// What labkit knows of a cluster once it has found one.
struct Cluster {
    client: redis::cluster::ClusterClient,
    /// Every node it had then, as (host, port): if the node the URL names
    /// dies, new connections start from the others.
    nodes: Vec<(String, u16)>,
}

impl RedisConnector {
    pub(crate) fn new(url: &str) -> Result<RedisConnector> {
        let invalid = |why: String| {
            Error::InvalidInput(format!(
                "REDIS_URL {} is not a Redis URL ({why}); expected e.g. {DEFAULT_REDIS_URL}",
                mask_password(url)
            ))
        };
        let roots = tls::redis_roots(url).map_err(invalid)?;
        let client = match &roots {
            None => redis::Client::open(url),
            Some(roots) => redis::Client::build_with_tls(url, roots.clone()),
        }
        .map_err(|e| invalid(Cause::new(e).to_string()))?;
        Ok(RedisConnector {
            client,
            url: url.to_string(),
            roots,
            cluster: OnceLock::new(),
        })
    }

    /// The client for the node the URL names (testkit's raw access).
    pub(crate) fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// A cluster client seeded with the URL's node alone, with the URL's
    /// TLS roots (testkit's raw access).
    pub(crate) fn raw_cluster_client(&self) -> Result<redis::cluster::ClusterClient> {
        let mut builder =
            redis::cluster::ClusterClient::builder(vec![self.client.get_connection_info().clone()]);
        if let Some(roots) = &self.roots {
            builder = builder.certs(roots.clone());
        }
        builder.build().map_err(|e| Error::redis(&self.url, e))
    }

    /// The URL's connection settings, at another node of its cluster: with
    /// TLS (and its roots) if the URL has it.
    fn at(&self, host: String, port: u16) -> redis::ConnectionInfo {
        let info = self.client.get_connection_info().clone();
        let addr = match info.addr() {
            redis::ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => redis::ConnectionAddr::Tcp(host, port),
        };
        info.set_addr(addr)
    }

    /// A connection to the one node the URL names (or to `addr` instead).
    fn node(&self, addr: Option<(String, u16)>) -> Result<redis::Connection> {
        let client = match addr {
            None => self.client.clone(),
            Some((host, port)) => {
                redis::Client::open(self.at(host, port)).map_err(|e| Error::redis(&self.url, e))?
            }
        };
        let url = self.url.clone();
        let info = client.get_connection_info().clone();
        bounded(
            Service::Redis,
            &self.url,
            move || {
                let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                conn.set_read_timeout(Some(IO_TIMEOUT))?;
                conn.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(conn)
            },
            move |e| diagnose::redis_error(&url, e),
        )
        .map_err(|e| diagnose::redis_connect(&self.url, &info, e))
    }

    /// The cluster, if the URL names a cluster node (asked once).
    fn cluster(&self) -> Result<Option<&Cluster>> {
        if let Some(known) = self.cluster.get() {
            return Ok(known.as_ref());
        }
        let redis = |e| Error::redis(&self.url, e);
        let mut conn = self.node(None)?;
        let info: String = match redis::cmd("INFO").arg("cluster").query(&mut conn) {
            Ok(info) => info,
            // An ACL user who may not run INFO: take it for a single node
            // rather than refuse the lab (on a cluster, it needs INFO).
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => {
                String::new()
            }
            // The first command on a connection: where a TLS-only server
            // (met with redis://) closes it.
            Err(e) => {
                return Err(diagnose::redis_connect(
                    &self.url,
                    self.client.get_connection_info(),
                    diagnose::redis_error(&self.url, e),
                ));
            }
        };
        let cluster = if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
            let listing: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut conn)
                .map_err(redis)?;
            let nodes: Vec<(String, u16)> = cluster_nodes(&listing)
                .into_iter()
                .map(|(addr, _)| addr)
                .collect();
            let mut seeds = vec![self.client.get_connection_info().clone()];
            seeds.extend(
                nodes
                    .iter()
                    .map(|(host, port)| self.at(host.clone(), *port)),
            );
            let mut builder = redis::cluster::ClusterClient::builder(seeds);
            if let Some(roots) = &self.roots {
                // Every node's connection trusts the URL's roots.
                builder = builder.certs(roots.clone());
            }
            let client = builder
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(IO_TIMEOUT)
                // A few quick retries (MOVED during a failover, a node
                // reconnecting), never minutes of them: calls stay bounded.
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(200)
                .build()
                .map_err(redis)?;
            Some(Cluster { client, nodes })
        } else {
            None
        };
        Ok(self.cluster.get_or_init(|| cluster).as_ref())
    }

    /// Whether the URL names a Redis Cluster node.
    pub(crate) fn is_cluster(&self) -> Result<bool> {
        Ok(self.cluster()?.is_some())
    }

    /// One connection outside any pool (labkit's own housekeeping).
    pub(crate) fn open(&self) -> Result<RedisConn> {
        match self.cluster()? {
            None => Ok(RedisConn::Single(self.node(None)?)),
            Some(cluster) => {
                let cluster = cluster.client.clone();
                let url = self.url.clone();
                let conn = bounded(
                    Service::Redis,
                    &self.url,
                    move || cluster.get_connection(),
                    move |e| diagnose::redis_error(&url, e),
                )
                .map_err(|e| {
                    diagnose::redis_connect(&self.url, self.client.get_connection_info(), e)
                })?;
                Ok(RedisConn::Cluster(Box::new(conn)))
            }
        }
    }

    /// Deletes every key matching `pattern`, on every master of a cluster
    /// (SCAN, so Redis is never blocked).
    pub(crate) fn delete_matching(&self, pattern: &str) -> Result<()> {
        let redis = |e| Error::redis(&self.url, e);
        let nodes = if self.is_cluster()? {
            self.masters()?.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for node in nodes {
            let mut conn = self.node(node)?;
            let options = redis::ScanOptions::default()
                .with_pattern(pattern)
                .with_count(1000);
            let keys: Vec<String> = redis::Commands::scan_options::<String>(&mut conn, options)
                .map_err(redis)?
                .collect::<redis::RedisResult<_>>()
                .map_err(redis)?;
            // One DEL per key: in a cluster, one command may not span slots.
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("DEL").arg(key).ignore();
            }
            if !keys.is_empty() {
                pipe.query::<()>(&mut conn).map_err(redis)?;
            }
        }
        Ok(())
    }

    /// The cluster's masters that are not failing, as (host, port), asked
    /// of the first node that answers.
    pub(crate) fn masters(&self) -> Result<Vec<(String, u16)>> {
        let known = self.cluster()?.map(|c| c.nodes.clone()).unwrap_or_default();
        let mut last = None;
        for node in std::iter::once(None).chain(known.into_iter().map(Some)) {
            let listing = self.node(node).and_then(|mut conn| {
                redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query::<String>(&mut conn)
                    .map_err(|e| Error::redis(&self.url, e))
            });
            match listing {
                Ok(listing) => {
                    return Ok(cluster_nodes(&listing)
                        .into_iter()
                        .filter(|(_, master)| *master)
                        .map(|(addr, _)| addr)
                        .collect());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least the URL's node was asked"))
    }
}

/// The nodes of a `CLUSTER NODES` listing that are not failing, as
/// ((host, port), is a master).
fn cluster_nodes(listing: &str) -> Vec<((String, u16), bool)> {
    listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if flags.contains("fail") || flags.contains("noaddr") {
                return None;
            }
            let addr = fields.get(1)?.split('@').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((
                (host.to_string(), port.parse().ok()?),
                flags.contains("master"),
            ))
        })
        .collect()
}

impl Connector for RedisConnector {
    type Conn = RedisConn;

    fn connect(&self) -> Result<RedisConn> {
        self.open()
    }

    fn check(&self, conn: &mut RedisConn) -> bool {
        redis::cmd("PING").query::<String>(conn).is_ok()
    }

    fn is_closed(&self, conn: &RedisConn) -> bool {
        !conn.is_open()
    }
}

/// Pooled access to Redis, in this lab's key space.
pub struct Cache {
    pool: Pool<RedisConnector>,
    prefix: String,
    url: String,
    hooks: Arc<Hooks>,
}

impl Cache {
    pub(crate) fn new(
        connector: RedisConnector,
        prefix: String,
        max_size: u32,
        hooks: Arc<Hooks>,
    ) -> Cache {
        let url = connector.url.clone();
        Cache {
            pool: Pool::new(connector, max_size, Service::Redis, &url),
            prefix,
            url,
            hooks,
        }
    }

    /// The value at `key`, decoded from JSON. Anything that does not decode
    /// as `T` (not JSON, or JSON of another shape, such as an older `User`) is
    /// a miss: it is removed and `Ok(None)` is returned, so a corrupt entry
    /// costs one refill instead of failing every read. It is logged once per
    /// key and type in a process, so a writer that keeps storing the wrong
    /// shape is reported once, not on every read.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let full = self.key(key)?;
        let bytes: Option<Vec<u8>> = self.command(|c| redis::cmd("GET").arg(&full).query(c))?;
        self.hooks.cache_call(Phase::After, Action::Look(key))?;
        let Some(bytes) = bytes else { return Ok(None) };
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Some(value)),
            Err(err) => {
                let type_name = std::any::type_name::<T>();
                if first_report(&full, type_name) {
                    eprintln!(
                        "labkit: cache entry {key:?} does not decode as {type_name} ({err}); treating it as a miss (reported once per key and type)"
                    );
                }
                // Remove it only if it is still the same bytes, so a fresh
                // value written meanwhile survives.
                let _: i64 =
                    self.command(|c| DELETE_IF_EQUAL.key(&full).arg(&bytes[..]).invoke(c))?;
                Ok(None)
            }
        }
    }

    /// Stores `value` as JSON at `key`, expiring after `ttl` (at least 1 ms).
    pub fn set_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        let full = self.key(key)?;
        let ms = ttl_millis(ttl)?;
        let json = to_json(value)?;
        self.hooks.cache_call(Phase::Before, Action::Fill(key))?;
        self.command(|c| {
            redis::cmd("SET")
                .arg(&full)
                .arg(&json)
                .arg("PX")
                .arg(ms)
                .query::<()>(c)
        })?;
        self.hooks.cache_call(Phase::After, Action::Fill(key))?;
        Ok(())
    }

    /// Deletes `key`; true if it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let full = self.key(key)?;
        self.hooks.check_removal()?;
        let n: i64 = self.command(|c| redis::cmd("DEL").arg(&full).query(c))?;
        self.hooks.cache_call(Phase::After, Action::Delete(key))?;
        Ok(n > 0)
    }

    /// Whether `key` holds a value.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let full = self.key(key)?;
        let n: i64 = self.command(|c| redis::cmd("EXISTS").arg(&full).query(c))?;
        self.hooks.cache_call(Phase::After, Action::Look(key))?;
        Ok(n > 0)
    }

    /// Time left before `key` expires; `None` if it is missing or never expires.
    pub fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        let full = self.key(key)?;
        let ms: i64 = self.command(|c| redis::cmd("PTTL").arg(&full).query(c))?;
        Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
    }

    /// The pool, for the grader's and the benchmark's raw access.
    pub(crate) fn pool(&self) -> &Pool<RedisConnector> {
        &self.pool
    }

    /// The name `key` really has in Redis, with this lab's private prefix.
    pub(crate) fn storage_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(crate) fn key(&self, key: &str) -> Result<String> {
        if key.is_empty() {
            return Err(Error::InvalidInput("empty cache key".into()));
        }
        Ok(self.storage_key(key))
    }

    pub(crate) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Runs one command on a pooled connection. Every command labkit sends is
    /// idempotent, so one that failed on a dead connection is always retried.
    pub(crate) fn command<T>(
        &self,
        op: impl Fn(&mut RedisConn) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.hooks.check_cache()?;
        self.pool.run(|conn| match op(conn) {
            Ok(value) => Attempt::Done(value),
            Err(err) => Attempt::Failed {
                lost: err.is_io_error() || err.is_connection_dropped() || !conn.is_open(),
                retry_safe: true,
                error: Error::redis(&self.url, err),
            },
        })
    }
}

pub(crate) fn ttl_millis(ttl: Duration) -> Result<u64> {
    let ms = ttl.as_millis();
    if ms == 0 || ms > i64::MAX as u128 {
        return Err(Error::InvalidInput(format!(
            "TTL {ttl:?} must be at least 1 ms"
        )));
    }
    Ok(ms as u64)
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::InvalidInput(format!("value does not serialize to JSON: {e}")))
}

/// Whether this process has not yet reported an entry at `key` (its real
/// name) that does not decode as `type_name`. The set grows by one per such
/// key and type, never per read.
fn first_report(key: &str, type_name: &'static str) -> bool {
    static REPORTED: LazyLock<Mutex<HashSet<(String, &'static str)>>> =
        LazyLock::new(Mutex::default);
    REPORTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((key.to_string(), type_name))
}

static DELETE_IF_EQUAL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
});
