//! Where cases are served: the one contract between the daemon and what a cluster adds.
//!
//! The core holds the cases served on this node, whatever the store. What decides which
//! node serves a case (claims, leases, the shared queue, redirects) sits behind
//! [`Placement`], with two implementations: [`SingleNode`] (one daemon on its SQLite
//! store: every case is served here, every hook does nothing) and
//! `cluster_node::ClusterNode` (a node of a cluster on PostgreSQL). The daemon calls each
//! hook at one place: start-up ([`Placement::open_cases`], [`Placement::join`],
//! [`Placement::start`]), the accept loop ([`Placement::serving`]), the request path
//! ([`Placement::before`]), every core command ([`Placement::after_command`]), live queue
//! pushes ([`Placement::shared_queue`]), `/metrics` and shutdown ([`Placement::leave`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sosq::protocol::{Reply, Request};
use tokio::task::JoinHandle;

use super::dispatch::Caller;
use super::{ServerError, Shared};
use crate::broker::{Broker, CaseRecord, Persist};
use crate::store::CaseStore;

/// A hook's answer, to await (boxed: the daemon holds its placement as a trait object).
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, ServerError>> + Send + 'a>>;

/// What a daemon asks about where cases are served (see module docs).
pub trait Placement: Send + Sync {
    /// Readies a new core (`broker`) and returns the open cases it starts with, from
    /// `store`. Errors: the store's.
    fn open_cases(
        &self,
        broker: &mut Broker,
        store: &dyn CaseStore,
    ) -> Result<Vec<CaseRecord>, ServerError>;

    /// Done once before the daemon serves. Errors: it cannot join (see implementations).
    fn join<'a>(&'a self, shared: &'a Shared) -> Pending<'a, ()>;

    /// Starts the background work this placement needs; the daemon aborts the tasks at
    /// shutdown, just before [`Placement::leave`].
    fn start(self: Arc<Self>, shared: Arc<Shared>) -> Vec<JoinHandle<()>>;

    /// Whether this node may serve anyone now (a cluster node: while its lease holds).
    fn serving(&self) -> bool;

    /// Runs before `request` from `caller` runs on this node's core: `Some` reply if it
    /// was answered here, `None` to go on. Errors: as the request would fail, or a
    /// redirect to the node serving the case it names.
    fn before<'a>(
        &'a self,
        shared: &'a Shared,
        caller: &'a Caller,
        request: &'a Request,
    ) -> Pending<'a, Option<Reply>>;

    /// After a command ran on the core, under its lock, with the store changes it made
    /// (submitted next, in this order). Must not block.
    fn after_command(&self, broker: &Broker, changes: &[Persist]);

    /// Whether queue pages come from a queue shared with other nodes (which this
    /// placement then pushes to watchers) rather than from this node's core.
    fn shared_queue(&self) -> bool;

    /// This placement's own `/metrics` families (Prometheus text), if any.
    fn metrics<'a>(
        &'a self,
        shared: &'a Shared,
    ) -> Pin<Box<dyn Future<Output = String> + Send + 'a>>;

    /// Done once at a clean stop, before the parties are told to come back.
    fn leave(&self) -> Pending<'_, ()>;
}

/// One daemon on its own store: every case is served here.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleNode;

impl Placement for SingleNode {
    /// Every stored code is held (never handed out again) and every open case is loaded.
    fn open_cases(
        &self,
        broker: &mut Broker,
        store: &dyn CaseStore,
    ) -> Result<Vec<CaseRecord>, ServerError> {
        store.load_codes(&mut |code| broker.reserve_code(code))?;
        Ok(store.load_open()?)
    }

    fn join<'a>(&'a self, _shared: &'a Shared) -> Pending<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn start(self: Arc<Self>, _shared: Arc<Shared>) -> Vec<JoinHandle<()>> {
        Vec::new()
    }

    fn serving(&self) -> bool {
        true
    }

    fn before<'a>(
        &'a self,
        _shared: &'a Shared,
        _caller: &'a Caller,
        _request: &'a Request,
    ) -> Pending<'a, Option<Reply>> {
        Box::pin(async { Ok(None) })
    }

    fn after_command(&self, _broker: &Broker, _changes: &[Persist]) {}

    fn shared_queue(&self) -> bool {
        false
    }

    fn metrics<'a>(
        &'a self,
        _shared: &'a Shared,
    ) -> Pin<Box<dyn Future<Output = String> + Send + 'a>> {
        Box::pin(async { String::new() })
    }

    fn leave(&self) -> Pending<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}
