//! Tests of the Raft layer: openraft's storage conformance suite on the sled
//! stores, snapshot and format-version checks, and a three-master group on
//! loopback gRPC that replicates, restarts a member and catches it up.

use std::collections::BTreeMap;
use std::time::Duration;

use basin_common::rpc::Connector;
use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, RaftSnapshotBuilder, StorageIOError};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;

use super::types::StorageError;
use super::*;
use crate::namenode::state::Command;

// ---------------------------------------------------------------- storage

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let io = |e: &dyn std::error::Error| StorageIOError::write(AnyError::error(e));
        let dir = tempfile::tempdir().map_err(|e| io(&e))?;
        let db = sled::open(dir.path()).map_err(|e| io(&e))?;
        check_format_version(&db).map_err(|e| io(&e))?;
        let log = LogStore::open(&db, 0).map_err(|e| io(&e))?;
        let sm = StateMachineStore::open(&db, 0)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn storage_conformance() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}

#[test]
fn format_version_is_stamped_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path()).expect("sled");
    check_format_version(&db).expect("fresh db");
    check_format_version(&db).expect("same version");
    db.insert("format_version", "7").expect("insert");
    let err = check_format_version(&db).expect_err("newer format");
    assert_eq!(
        err.to_string(),
        "unsupported master metadata format 7; this build reads 1"
    );
}

#[tokio::test]
async fn snapshot_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path()).expect("sled");
    let mut sm = StateMachineStore::open(&db, 0).expect("open");
    let entries: Vec<Entry> = (1..=3u64)
        .map(|i| Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 0), i),
            payload: openraft::EntryPayload::Normal(mkdir(i)),
        })
        .collect();
    sm.apply(entries).await.expect("apply");
    let built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    drop(sm);

    let mut reopened = StateMachineStore::open(&db, 0).expect("reopen");
    assert_eq!(reopened.last_applied().map(|l| l.index), Some(3));
    assert!(reopened.read(|s| (1..=3).all(|i| has_dir(s, i))));
    let cur = reopened
        .get_current_snapshot()
        .await
        .expect("get")
        .expect("some");
    assert_eq!(cur.meta, built.meta);
}

// ---------------------------------------------------------------- cluster

fn mkdir(i: u64) -> Command {
    Command::Mkdir {
        path: format!("/d{i}"),
        parents: true,
        user: "basin".into(),
        mtime_ms: 0,
    }
}

fn has_dir(s: &FsState, i: u64) -> bool {
    s.inodes.contains_key(&format!("/d{i}"))
}

fn state_json(n: &RaftNode) -> String {
    n.read(|s| serde_json::to_string(s).expect("encode state"))
}

/// Polls `cond` until it holds; panics with `what` at the deadline.
async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Member {
    node: RaftNode,
    db: sled::Db,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    _dir: TempDir,
}

fn serve(node: &RaftNode, listener: TcpListener) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, rx) = oneshot::channel::<()>();
    let router = tonic::transport::Server::builder().add_service(node.service());
    let server = tokio::spawn(async move {
        let incoming = TcpListenerStream::new(listener);
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, async move { rx.await.unwrap_or(()) })
            .await
        {
            tracing::warn!(error = %e, "test server failed");
        }
    });
    (stop, server)
}

async fn start_node(id: u64, peers: &BTreeMap<u64, String>, db: sled::Db) -> RaftNode {
    start(RaftStartConfig {
        node_id: id,
        addr: peers[&id].clone(),
        peers: peers.clone(),
        db,
        connector: Connector::new("test-token", None),
        heartbeat_ms: 50,
        election_min_ms: 300,
        election_max_ms: 600,
        snapshot_logs: 5,
    })
    .await
    .expect("start raft node")
}

/// Writes through whichever member leads, retrying across elections.
async fn write(members: &BTreeMap<u64, Member>, cmd: Command) -> CommandResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = members
            .values()
            .find_map(|m| m.node.leader())
            .map(|(id, _)| id);
        let target = leader
            .and_then(|id| members.get(&id))
            .or_else(|| members.values().next())
            .expect("members");
        match target.node.write(cmd.clone()).await {
            Ok(r) => return r,
            Err(e) => assert!(
                Instant::now() < deadline,
                "write failed until deadline: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_masters_replicate_and_catch_up_after_restart() {
    let mut listeners = BTreeMap::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        peers.insert(id, l.local_addr().expect("addr").to_string());
        listeners.insert(id, l);
    }
    let mut members = BTreeMap::new();
    for (id, listener) in listeners {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let node = start_node(id, &peers, db.clone()).await;
        let (stop, server) = serve(&node, listener);
        members.insert(
            id,
            Member {
                node,
                db,
                stop,
                server,
                _dir: dir,
            },
        );
    }

    wait_until("a leader known to all", Duration::from_secs(20), || {
        let leaders: Vec<_> = members
            .values()
            .map(|m| m.node.leader().map(|l| l.0))
            .collect();
        leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
    })
    .await;

    for i in 1..=8 {
        assert_eq!(write(&members, mkdir(i)).await, CommandResult::Ok);
    }
    wait_until(
        "all masters apply 8 writes",
        Duration::from_secs(20),
        || {
            members
                .values()
                .all(|m| m.node.read(|s| (1..=8).all(|i| has_dir(s, i))))
        },
    )
    .await;
    let leader = members
        .values()
        .find(|m| m.node.is_leader())
        .expect("a leader")
        .node
        .clone();
    leader
        .ensure_linearizable()
        .await
        .expect("leader reads are linearizable");

    // Stop a follower, write more (the leader snapshots and purges its log
    // meanwhile), then restart it on the same database.
    let fid = *members
        .iter()
        .find(|(_, m)| !m.node.is_leader())
        .expect("a follower")
        .0;
    let f = members.remove(&fid).expect("follower");
    let f_applied = f.node.sm.last_applied().map(|l| l.index).unwrap_or(0);
    f.node.shutdown().await;
    let _ = f.stop.send(());
    f.server.await.expect("server task");
    let dir = f._dir;
    drop((f.node, f.db));

    for i in 9..=20 {
        assert_eq!(write(&members, mkdir(i)).await, CommandResult::Ok);
    }

    // Once the leader has purged what the stopped master lacks, catching up
    // takes a snapshot sent over gRPC.
    wait_until(
        "the leader purges past the stopped master",
        Duration::from_secs(20),
        || {
            leader
                .metrics()
                .purged
                .is_some_and(|p| p.index > f_applied + 1)
        },
    )
    .await;

    let purged = leader.metrics().purged.map(|l| l.index).unwrap_or(0);
    // Reopen the database from disk: the old handle is gone once every
    // task of the stopped node has let go of it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let db = loop {
        match sled::open(dir.path()) {
            Ok(db) => break db,
            Err(e) => assert!(Instant::now() < deadline, "reopening sled: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let node = start_node(fid, &peers, db.clone()).await;
    assert!(
        node.read(|s| (1..=8).all(|i| has_dir(s, i))),
        "a restarted master recovers its applied state from disk"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match TcpListener::bind(&peers[&fid]).await {
            Ok(l) => break l,
            Err(e) => assert!(Instant::now() < deadline, "rebinding {}: {e}", peers[&fid]),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (stop, server) = serve(&node, listener);
    members.insert(
        fid,
        Member {
            node,
            db,
            stop,
            server,
            _dir: dir,
        },
    );

    wait_until(
        "the restarted master catches up",
        Duration::from_secs(30),
        || {
            let want = state_json(&leader);
            members.values().all(|m| state_json(&m.node) == want)
                && members[&fid].node.read(|s| (1..=20).all(|i| has_dir(s, i)))
        },
    )
    .await;

    let installed = members[&fid].node.metrics().snapshot.map(|l| l.index);
    assert!(installed >= Some(purged), "caught up through a snapshot");

    for m in members.into_values() {
        m.node.shutdown().await;
        let _ = m.stop.send(());
        let _ = m.server.await;
    }
}
