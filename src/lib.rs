//! odradek: a Kafka wire-protocol compatible message broker.
//!
//! A request's life: [`server`] accepts a connection and reads length-prefixed frames (capped before
//! allocating) → [`protocol`] decodes the header and, via the table in [`handlers`], the body with the
//! kafka-protocol crate → one handler per API (`handlers/<api>.rs`) works on the owners of state:
//! [`partition`] (a log plus leader epoch, high watermark, ISR and idempotent-producer state) and
//! [`controller`] (the metadata log and image), the coordinators [`group`] and [`txn`] → [`log`] (segments, indexes, recovery on disk) → the handler's
//! response is encoded and written back in request order.
//!
//! [`broker`] ties identity, controller and hosted partitions together; [`config`] holds every setting under
//! Kafka's own property names. [`replication`] is the follower side of replication: fetcher tasks that copy
//! leaders' logs over the Kafka Fetch API.

pub mod broker;
pub mod config;
pub mod controller;
pub mod group;
pub mod handlers;
pub mod log;
pub mod partition;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod txn;
