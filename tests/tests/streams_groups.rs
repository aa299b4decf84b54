//! Consumer groups: two members split a stream's shards; when one is
//! killed, the other takes its shards over and resumes from the checkpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use basin_tests::streams::{client, parse_read_lines, put_batch};
use basin_tests::{Cluster, Spec, basin_bin, wait_for};

fn member(c: &Cluster, name: &str) -> (Child, std::path::PathBuf) {
    let out = c.dir.path().join(format!("{name}.out"));
    let child = Command::new(basin_bin())
        .args(["--master", &c.master_list(), "--token", &c.token, "--json"])
        .args(["stream", "read", "feed", "--group", "g1", "--member", name])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out file"))
        .stderr(std::fs::File::create(c.dir.path().join(format!("{name}.err"))).expect("err"))
        .spawn()
        .expect("spawn member");
    (child, out)
}

fn records(path: &std::path::Path) -> Vec<basin_tests::streams::Read> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The last line may be half written.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    parse_read_lines(complete).unwrap_or_default()
}

/// The shards a member holds, from its log ("shard lease taken" / "lost").
fn held(c: &Cluster, name: &str) -> BTreeSet<String> {
    let log = std::fs::read_to_string(c.dir.path().join(format!("{name}.err"))).unwrap_or_default();
    let mut held = BTreeSet::new();
    for line in log.lines() {
        let plain: String = strip_ansi(line);
        let Some(shard) = plain
            .split_whitespace()
            .find_map(|w| w.strip_prefix("shard="))
            .map(str::to_string)
        else {
            continue;
        };
        if plain.contains("shard lease taken") {
            held.insert(shard);
        } else if plain.contains("shard lease lost") {
            held.remove(&shard);
        }
    }
    held
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for ch in s.chars() {
        match (esc, ch) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

#[test]
fn group_members_share_shards_and_take_over_from_checkpoints() {
    let c = Cluster::start(Spec {
        task: 0,
        worker_args: vec!["--stream-no-limits".into()],
        extra_master_args: vec!["--group-lease".into(), "2s".into()],
        ..Spec::default()
    })
    .expect("cluster");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut children: Vec<Child> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        c.ok(&["stream", "create", "feed", "--shards", "4"])?;
        let (a, a_out) = member(&c, "a");
        children.push(a);
        let (b, b_out) = member(&c, "b");
        children.push(b);
        // Wait until the leases settle: two shards each.
        wait_for(
            "both members to hold two shards",
            Duration::from_secs(30),
            || {
                let (ha, hb) = (held(&c, "a"), held(&c, "b"));
                (ha.len() == 2 && hb.len() == 2 && ha.is_disjoint(&hb)).then_some(())
            },
        )?;
        let sc = client(&c);
        let batch1: Vec<(String, String)> = (0..2000)
            .map(|i| (format!("k{}", i % 101), format!("one-{i}")))
            .collect();
        let acked1 = rt.block_on(put_batch(&sc, "feed", batch1))?;
        anyhow::ensure!(acked1.len() == 2000, "batch 1 not all acknowledged");
        // Both members read; together they print every record of batch 1.
        let (a_shards, b_shards) = wait_for(
            "the members to read batch 1",
            Duration::from_secs(30),
            || {
                let (ra, rb) = (records(&a_out), records(&b_out));
                let all: BTreeSet<&str> = ra
                    .iter()
                    .chain(rb.iter())
                    .map(|r| r.data.as_str())
                    .collect();
                if all.len() < 2000 {
                    return None;
                }
                let sa: BTreeSet<String> = ra.iter().map(|r| r.shard.clone()).collect();
                let sb: BTreeSet<String> = rb.iter().map(|r| r.shard.clone()).collect();
                Some((sa, sb))
            },
        )?;
        anyhow::ensure!(
            a_shards.len() == 2 && b_shards.len() == 2 && a_shards.is_disjoint(&b_shards),
            "shards not split between the members: a {a_shards:?}, b {b_shards:?}"
        );
        // Wait until the group's checkpoints cover batch 1.
        let ends: BTreeMap<String, u64> = acked1.iter().fold(BTreeMap::new(), |mut m, r| {
            let e = m.entry(r.shard.clone()).or_insert(0);
            *e = (*e).max(r.seq + 1);
            m
        });
        wait_for("checkpoints of batch 1", Duration::from_secs(30), || {
            let v = c.json(&["stream", "describe", "feed"]).ok()?;
            let cps =
                v["groups"].as_array()?.iter().find(|g| g["name"] == "g1")?["checkpoints"].clone();
            let got: BTreeMap<String, u64> = cps
                .as_array()?
                .iter()
                .filter_map(|cp| Some((cp["shard"].as_str()?.to_string(), cp["seq"].as_u64()?)))
                .collect();
            ends.iter()
                .all(|(s, e)| got.get(s).is_some_and(|g| g >= e))
                .then_some(())
        })?;
        // Kill member a; b must take its shards and read only what is new there.
        children[0].kill()?;
        let _ = children[0].wait();
        let b_before = records(&b_out).len();
        let batch2: Vec<(String, String)> = (0..1000)
            .map(|i| (format!("k{}", i % 101), format!("two-{i}")))
            .collect();
        rt.block_on(put_batch(&sc, "feed", batch2))?;
        wait_for(
            "b to read batch 2 from every shard",
            Duration::from_secs(60),
            || {
                let rb = records(&b_out);
                let n = rb.iter().filter(|r| r.data.starts_with("two-")).count();
                (n >= 1000).then_some(())
            },
        )?;
        let after: Vec<_> = records(&b_out).into_iter().skip(b_before).collect();
        let took: BTreeSet<&str> = after.iter().map(|r| r.shard.as_str()).collect();
        anyhow::ensure!(
            a_shards.iter().all(|s| took.contains(s.as_str())),
            "b did not take over a's shards {a_shards:?} (read from {took:?})"
        );
        let reread = after.iter().filter(|r| r.data.starts_with("one-")).count();
        anyhow::ensure!(
            reread == 0,
            "b re-read {reread} records of batch 1 that a had checkpointed"
        );
        Ok(())
    })();
    for mut ch in children {
        let _ = ch.kill();
        let _ = ch.wait();
    }
    if let Err(e) = result {
        c.dump_logs();
        for n in ["a", "b"] {
            eprintln!(
                "--- member {n} stderr ---\n{}",
                std::fs::read_to_string(c.dir.path().join(format!("{n}.err"))).unwrap_or_default()
            );
        }
        panic!("{e:#}");
    }
}
