//! The Redis connection under [`Cache`](super::Cache): a single Redis or a
//! Redis Cluster behind one type, opened with bounded connects and I/O
//! timeouts, over TLS when the URL says `rediss://`. Whether `REDIS_URL` is a
//! cluster is found out here, once; the learner's keys are the same either way.

use std::sync::OnceLock;
use std::time::Duration;

use redis::ConnectionLike;

use super::Result;
use super::config::DEFAULT_REDIS_URL;
use super::connect::{CONNECT_TIMEOUT, bounded};
use super::diagnose;
use super::error::{Cause, Error, Service, mask_password};
use super::pool::Connector;
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
            let client = self.cluster_client(&nodes).map_err(redis)?;
            Some(Cluster { client, nodes })
        } else {
            None
        };
        Ok(self.cluster.get_or_init(|| cluster).as_ref())
    }

    /// A cluster client seeded with the URL's node and `nodes`, so that it
    /// can start when the URL's node is down; bounded, with the URL's TLS.
    fn cluster_client(
        &self,
        nodes: &[(String, u16)],
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
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
        builder
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(IO_TIMEOUT)
            // A few quick retries (MOVED during a failover, a node
            // reconnecting), never minutes of them: calls stay bounded.
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()
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

// Service-free: `cargo test --lib` (docs/MAINTAINERS.md).
#[cfg(test)]
mod tests {
    use super::cluster_nodes;

    fn node(host: &str, port: u16, master: bool) -> ((String, u16), bool) {
        ((host.to_string(), port), master)
    }

    #[test]
    fn cluster_nodes_reads_addresses_and_roles_and_skips_failing_nodes() {
        // As Redis 7 prints it: id, ip:port@cport[,hostname], flags, master,
        // ping, pong, epoch, link state, slots.
        let listing = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-a slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 disconnected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail? 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 :0@0 master,noaddr - 1426238316232 1426238316232 6 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            cluster_nodes(listing),
            vec![
                node("127.0.0.1", 30004, false),
                node("127.0.0.1", 30002, true),
                node("127.0.0.1", 30001, true),
            ]
        );
    }

    #[test]
    fn cluster_nodes_keeps_ipv6_hosts_and_drops_lines_it_cannot_read() {
        let listing = "a ::1:7000@17000 master - 0 0 1 connected 0-16383\n\
                       \n\
                       b 127.0.0.1@17001 master - 0 0 2 connected\n\
                       c 127.0.0.1:port@17002 master - 0 0 3 connected\n\
                       d\n";
        assert_eq!(cluster_nodes(listing), vec![node("::1", 7000, true)]);
        assert!(cluster_nodes("").is_empty());
    }
}
