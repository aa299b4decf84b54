//! The leader's shard check, run with the namenode monitor: a dead primary
//! is replaced by a live in-sync replica (with a new epoch, which fences the
//! old one); a dead replica is replaced by another core worker, which then
//! catches up from the primary before it counts as in sync.

use tracing::{info, warn};

use super::state::{Shard, StreamCommand};
use crate::namenode::Namenode;
use crate::namenode::state::Command;

struct Plan {
    stream: String,
    shard: String,
    epoch: u64,
    primary: Option<u64>,
    remove: Vec<u64>,
    add: Vec<u64>,
}

/// One pass over every shard; `settled` is false right after this master
/// became leader, before workers have had time to heartbeat it.
pub async fn check(nn: &Namenode, settled: bool) {
    if !settled {
        return;
    }
    let live: Vec<u64> = nn.candidates().into_iter().map(|c| c.id).collect();
    let alive = |n: &u64| {
        let bm = nn.block_map();
        bm.is_live(*n, nn.cfg.dead_after)
    };
    let shards: Vec<(String, u32, Shard)> = nn.read(|s| {
        s.streams
            .streams
            .values()
            .flat_map(|st| {
                st.shards
                    .iter()
                    .map(|sh| (st.name.clone(), st.replication, sh.clone()))
            })
            .collect()
    });
    let mut plans = Vec::new();
    for (stream, rf, sh) in shards {
        let Shard {
            id: shard,
            epoch,
            primary,
            replicas,
            isr,
            ..
        } = sh;
        let dead: Vec<u64> = replicas.iter().filter(|r| !alive(r)).copied().collect();
        let mut plan = Plan {
            stream,
            shard,
            epoch,
            primary: None,
            remove: vec![],
            add: vec![],
        };
        if primary == 0 || dead.contains(&primary) {
            // Only an in-sync replica may take over: it has every acknowledged record.
            match isr.iter().find(|r| alive(r)) {
                Some(p) if *p != primary => plan.primary = Some(*p),
                Some(_) => {}
                None if primary != 0 => {
                    warn!(stream = %plan.stream, shard = %plan.shard, "no live in-sync replica: the shard waits for one to return");
                }
                None => {}
            }
        }
        // Replace dead followers; a dead primary is replaced once a new one is chosen,
        // and never the last in-sync copy.
        let new_primary = plan.primary.unwrap_or(primary);
        for d in &dead {
            let in_sync_left = isr.iter().filter(|r| *r != d && alive(r)).count();
            if *d != new_primary && in_sync_left > 0 {
                plan.remove.push(*d);
            }
        }
        let keep = replicas.len() - plan.remove.len();
        let want = (rf as usize).saturating_sub(keep);
        plan.add = live
            .iter()
            .filter(|c| !replicas.contains(c))
            .take(want)
            .copied()
            .collect();
        if plan.primary.is_some() || !plan.remove.is_empty() || !plan.add.is_empty() {
            plans.push(plan);
        }
    }
    for p in plans {
        let cmd = Command::Stream(StreamCommand::ChangeReplicas {
            name: p.stream.clone(),
            shard: p.shard.clone(),
            expect_epoch: Some(p.epoch),
            bump_epoch: true,
            primary: p.primary,
            remove: p.remove.clone(),
            add: p.add.clone(),
            isr_add: vec![],
            isr_remove: vec![],
        });
        match nn.write(cmd).await {
            Ok(_) => info!(
                node_id = nn.cfg.id,
                stream = %p.stream,
                shard = %p.shard,
                epoch = p.epoch + 1,
                primary = ?p.primary,
                removed = ?p.remove,
                added = ?p.add,
                "shard replicas changed"
            ),
            Err(e) => {
                warn!(node_id = nn.cfg.id, stream = %p.stream, shard = %p.shard, "shard change refused: {}", e.message())
            }
        }
    }
}
