//! One Redis server or a Redis Cluster behind the same connection type: the [`Store`]
//! sends its commands, scripts and pipelines through [`Conn`] either way.
//!
//! [`Store`]: super::Store

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// How long connecting, and then each call, may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is: one server, or the seed nodes of a cluster.
#[derive(Clone)]
pub(super) enum Client {
    Node(redis::Client),
    Cluster(ClusterClient),
}

/// A connection that reconnects by itself (cheap clone): to one server, or to every
/// master of a cluster, each command going to the node that holds its key's slot.
#[derive(Clone)]
pub enum Conn {
    /// One server.
    Node(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Client {
    /// A client for `urls`: a cluster when `cluster` is set or several URLs are listed
    /// (comma-separated), else one server.
    pub(super) fn open(urls: &str, cluster: bool) -> RedisResult<Self> {
        let nodes: Vec<&str> = urls.split(',').map(str::trim).collect();
        if !cluster && nodes.len() == 1 {
            return redis::Client::open(nodes[0]).map(Self::Node);
        }
        // A call is never sent twice, as on one server (a reserve call sent again after a
        // lost answer would answer its own reservations as replays): a redirect (MOVED,
        // ASK) or a lost connection fails that call, and the client refreshes the slot map
        // or reconnects for the next one.
        ClusterClientBuilder::new(nodes)
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .retries(0)
            .build()
            .map(Self::Cluster)
    }

    /// A new connection. On one server, one connect attempt (at most [`TIMEOUT`]): every
    /// call made while a reconnect is under way waits for it, and the manager's own
    /// retries wait 1 s, then 60 s or more (redis 0.32 multiplies its 1 s first delay by
    /// 100), so with retries a Redis that came back could leave the reserve calls waiting
    /// for minutes; the next call starts the next attempt.
    pub(super) async fn connect(&self) -> RedisResult<Conn> {
        match self {
            Self::Node(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(TIMEOUT)
                    .set_response_timeout(TIMEOUT)
                    .set_number_of_retries(0);
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(Conn::Node)
            }
            Self::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }
}

impl Conn {
    /// Runs `cmd` on every master (the one server, or each master of the cluster): for
    /// what each node holds for itself, such as its settings and replicas. The answers
    /// come by node address (empty for the one server), sorted.
    pub(super) async fn on_every_master(&mut self, cmd: &Cmd) -> RedisResult<Vec<(String, Value)>> {
        match self {
            Self::Node(conn) => Ok(vec![(String::new(), conn.req_packed_command(cmd).await?)]),
            Self::Cluster(conn) => {
                let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let Value::Map(answers) = conn.route_command(cmd, all).await? else {
                    return Err((redis::ErrorKind::TypeError, "no answer by node").into());
                };
                let mut answers = answers
                    .into_iter()
                    .map(|(node, v)| Ok((redis::from_owned_redis_value(node)?, v)))
                    .collect::<RedisResult<Vec<(String, Value)>>>()?;
                answers.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(answers)
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Client;

    #[test]
    fn several_urls_or_the_setting_make_a_cluster_client() {
        let cluster = |urls, setting| {
            matches!(
                Client::open(urls, setting).expect("valid"),
                Client::Cluster(_)
            )
        };
        assert!(!cluster("redis://127.0.0.1:6379", false));
        assert!(cluster("redis://127.0.0.1:6379", true));
        assert!(cluster(
            "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
            false
        ));
        assert!(Client::open("redis://127.0.0.1:7000,not a url", false).is_err());
    }
}
