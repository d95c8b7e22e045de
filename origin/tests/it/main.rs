//! The origin's integration tests, one binary: the real origin (in process or as the
//! built binary) against the real Redis, MariaDB and broker that `./dev test` starts.

// A test binary has no public API: its `pub` items are shared between its modules.
#![allow(unreachable_pub)]

mod fixtures;
mod helpers;

mod abuse;
mod admin;
mod buckets;
mod cli;
mod cluster;
mod confirm;
mod consumer;
mod consumer_crash;
mod failover;
mod faults;
mod keys;
mod memory;
mod netns;
mod partition;
mod purchase;
mod reconcile;
mod redis_settings;
mod rejections;
mod room;
mod servers;
mod slow_redis;
mod tls;
mod upgrade;
