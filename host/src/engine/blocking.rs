//! WASI's blocking calls under the call's deadline. The CPU deadline (epoch
//! interruption) only fires while Wasm runs; a plugin that sleeps or polls waits in the
//! host, where no epoch reaches it, and could hold the host for as long as it likes.
//! With nothing granted (no sockets, files or stdin), the only ways to block are
//! `wasi:io/poll`'s `poll` and `pollable.block` (a sleep is a clock pollable): they are
//! replaced here by versions that wait at most until the call's deadline, then trap.

use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;

use super::sandbox::{BlockedPastDeadline, StoreState};

/// The resource table, and when the current call must end.
pub(crate) struct DeadlinePoll<'a> {
    table: &'a mut ResourceTable,
    deadline: Option<Instant>,
}

struct HasDeadlinePoll;

impl HasData for HasDeadlinePoll {
    type Data<'a> = DeadlinePoll<'a>;
}

/// Replaces the `wasi:io/poll` that `add_to_linker_sync` linked.
pub(crate) fn shadow_poll(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    sync_poll::add_to_linker::<StoreState, HasDeadlinePoll>(linker, |s| {
        let (table, deadline) = s.poll_parts();
        DeadlinePoll { table, deadline }
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

impl DeadlinePoll<'_> {
    /// Waits for `wait` at most until the deadline.
    fn bounded<T>(
        &mut self,
        wait: impl AsyncFnOnce(&mut ResourceTable) -> wasmtime::Result<T>,
    ) -> wasmtime::Result<T> {
        let Some(deadline) = self.deadline else {
            return in_tokio(wait(self.table));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let table = &mut *self.table;
        match in_tokio(async { tokio::time::timeout(left, wait(table)).await }) {
            Ok(result) => result,
            Err(_) => Err(BlockedPastDeadline.into()),
        }
    }
}

impl sync_poll::Host for DeadlinePoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        self.bounded(async move |table| async_poll::Host::poll(table, pollables).await)
    }
}

impl sync_poll::HostPollable for DeadlinePoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        in_tokio(async_poll::HostPollable::ready(self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.bounded(async move |table| async_poll::HostPollable::block(table, pollable).await)
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}
