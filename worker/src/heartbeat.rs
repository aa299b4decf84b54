//! Talking to the masters: registration, one heartbeat loop per master,
//! full block reports, and carrying out the block commands the leader sends
//! back (replicate to other workers, delete).

use std::sync::atomic::Ordering;
use std::time::Duration;

use basin_proto as pb;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::context::WorkerCtx;

/// Registers with the leader master, retrying until it answers.
pub async fn register(
    ctx: &WorkerCtx,
    uuid: &str,
    mut shutdown: watch::Receiver<bool>,
) -> Option<u64> {
    let role = if ctx.is_core() {
        pb::NodeRole::Core
    } else {
        pb::NodeRole::Task
    };
    let req = pb::RegisterRequest {
        node_uuid: uuid.to_string(),
        addr: ctx.cfg.advertise.clone(),
        role: role as i32,
        zone: ctx.cfg.zone.clone(),
        name: ctx.cfg.name.clone(),
        external_addr: ctx.cfg.external_addr.clone(),
    };
    loop {
        let r = ctx.masters.call(|mut c| {
            let req = req.clone();
            async move { c.register(req).await }
        });
        tokio::select! {
            r = r => match r {
                Ok(resp) => {
                    ctx.node_id.store(resp.node_id, Ordering::Relaxed);
                    info!(node_id = resp.node_id, addr = %ctx.cfg.advertise, "registered with the masters");
                    return Some(resp.node_id);
                }
                Err(e) => warn!("registration failed, retrying: {e}"),
            },
            _ = shutdown.changed() => return None,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return None,
        }
    }
}

fn full_report(ctx: &WorkerCtx) -> pb::BlockReportRequest {
    let blocks = ctx
        .store
        .as_ref()
        .map(|s| {
            s.list()
                .into_iter()
                .map(|(block_id, length)| pb::ReportedBlock { block_id, length })
                .collect()
        })
        .unwrap_or_default();
    pb::BlockReportRequest {
        node_id: ctx.node_id(),
        blocks,
        full: true,
    }
}

/// Heartbeats one master until shutdown.
pub async fn heartbeat_loop(
    ctx: WorkerCtx,
    master: String,
    uuid: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(ctx.cfg.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Ok(mut client) = ctx.connector.master(&master) else {
            return;
        };
        let store = ctx.store.as_ref();
        let req = pb::HeartbeatRequest {
            node_id: ctx.node_id(),
            capacity_bytes: fs_capacity(&ctx),
            used_bytes: store.map(|s| s.used_bytes()).unwrap_or(0),
            blocks: store.map(|s| s.count() as u64).unwrap_or(0),
            free_task_slots: ctx.tasks.free_slots(),
            running: ctx.tasks.running(),
        };
        let resp = match tokio::time::timeout(
            ctx.cfg.heartbeat_interval.max(Duration::from_secs(2)),
            client.heartbeat(req),
        )
        .await
        {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(st)) => {
                tracing::debug!(master = %master, "heartbeat refused: {}", st.message());
                continue;
            }
            Err(_) => continue,
        };
        let due = last_full.elapsed() >= ctx.cfg.block_report_interval;
        if ctx.is_core() && (resp.reregister || due) {
            let report = full_report(&ctx);
            match client.block_report(report).await {
                Ok(_) => last_full = tokio::time::Instant::now(),
                Err(st) if st.code() == tonic::Code::FailedPrecondition => {
                    // This master does not know us (e.g. its state was rebuilt): register again.
                    register(&ctx, &uuid, shutdown.clone()).await;
                }
                Err(st) => warn!(master = %master, "full block report failed: {}", st.message()),
            }
        } else if resp.reregister && !ctx.is_core() {
            let known = ctx.node_id() != 0;
            if !known {
                register(&ctx, &uuid, shutdown.clone()).await;
            }
        }
        for k in &resp.kill {
            ctx.tasks.kill(k);
        }
        for t in resp.tasks {
            ctx.tasks.start(t);
        }
        if let Some(host) = &ctx.streams
            && resp.shards_authoritative
        {
            host.apply(resp.shards, true).await;
        }
        for cmd in resp.commands {
            let ctx = ctx.clone();
            tokio::spawn(async move { execute(ctx, cmd).await });
        }
    }
}

fn fs_capacity(ctx: &WorkerCtx) -> u64 {
    fs2::total_space(&ctx.cfg.data_dir).unwrap_or(0)
}

async fn execute(ctx: WorkerCtx, cmd: pb::BlockCommand) {
    let Some(store) = ctx.store.clone() else {
        return;
    };
    match cmd.kind {
        Some(pb::block_command::Kind::Delete(d)) => {
            for id in d.block_ids {
                match store.delete(id) {
                    Ok(_) => {
                        tracing::debug!(node_id = ctx.node_id(), block_id = id, "replica deleted")
                    }
                    Err(e) => warn!(node_id = ctx.node_id(), block_id = id, "delete failed: {e}"),
                }
            }
        }
        Some(pb::block_command::Kind::Replicate(r)) => {
            let id = r.block_id;
            let data = match store.reader(id, 0, 0) {
                Ok(mut rd) => {
                    let mut out = Vec::new();
                    let res = tokio::task::block_in_place(|| {
                        loop {
                            match rd.next_piece(basin_common::blockio::WIRE_CHUNK) {
                                Ok(Some(p)) => out.push(bytes::Bytes::from(p)),
                                Ok(None) => return Ok(()),
                                Err(e) => return Err(e),
                            }
                        }
                    });
                    if let Err(e) = res {
                        ctx.handle_corrupt(id, e.to_string()).await;
                        return;
                    }
                    out
                }
                Err(e) => {
                    warn!(
                        node_id = ctx.node_id(),
                        block_id = id,
                        "cannot replicate: {e}"
                    );
                    return;
                }
            };
            match basin_common::blockio::write_block(&ctx.connector, &r.targets, id, data).await {
                Ok(resp) => {
                    info!(node_id = ctx.node_id(), block_id = id, to = ?resp.stored_on, "block replicated")
                }
                Err(st) => warn!(
                    node_id = ctx.node_id(),
                    block_id = id,
                    "replication failed: {}",
                    st.message()
                ),
            }
        }
        None => {}
    }
}

/// Verifies every replica now and then; bad ones are quarantined and reported.
pub async fn scanner(ctx: WorkerCtx, mut shutdown: watch::Receiver<bool>) {
    let Some(store) = ctx.store.clone() else {
        return;
    };
    if ctx.cfg.scan_interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ctx.cfg.scan_interval) => {}
            _ = shutdown.changed() => return,
        }
        for (id, _) in store.list() {
            let s = store.clone();
            let res = tokio::task::spawn_blocking(move || {
                s.reader(id, 0, 0).and_then(|r| r.verify_all())
            })
            .await;
            if let Ok(Err(
                e @ (crate::storage::StorageError::Corrupt { .. }
                | crate::storage::StorageError::BadMeta(..)),
            )) = res
            {
                ctx.handle_corrupt(id, e.to_string()).await;
            }
        }
    }
}
