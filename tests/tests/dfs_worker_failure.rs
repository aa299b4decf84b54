//! Test 2: with 4 core workers, `kill -9` one: the file stays readable the
//! whole time and every block is back at 3 live replicas.

use std::time::Duration;

use basin_tests::{Cluster, Spec, wait_for};

#[test]
fn killed_core_worker_is_re_replicated() -> anyhow::Result<()> {
    let mut c = Cluster::start(Spec {
        core: 4,
        task: 0,
        ..Spec::default()
    })?;
    let data = c.put_random("/f.bin", 12 * 1024 * 1024, 2, &["--block-size", "1048576"])?;

    // Kill the worker holding the most replicas.
    let blocks = c.block_replicas("/f.bin")?;
    let victim_name = ["core-1", "core-2", "core-3", "core-4"]
        .into_iter()
        .max_by_key(|n| {
            let id = c.node_id(n).unwrap_or(0);
            blocks.iter().filter(|(_, r)| r.contains(&id)).count()
        })
        .unwrap();
    let victim = c.node_id(victim_name)?;
    c.worker(victim_name).kill9();

    let out = c.dir.path().join("out.bin");
    let healed = wait_for(
        "every block back at 3 live replicas",
        Duration::from_secs(60),
        || {
            // Readable throughout.
            let o = c.basin(&["dfs", "get", "-f", "/f.bin", out.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "get failed while healing: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                std::fs::read(&out).ok()? == data,
                "bytes differ while healing"
            );
            let f = c.json(&["dfs", "fsck", "/"]).ok()?;
            let files = f["files"].as_array()?;
            let all_three = files.iter().all(|file| {
                file["blocks"].as_array().is_some_and(|bs| {
                    bs.iter().all(|b| {
                        b["live"] == 3
                            && !b["nodes"]
                                .as_array()
                                .is_some_and(|ns| ns.iter().any(|n| n.as_u64() == Some(victim)))
                    })
                })
            });
            all_three.then_some(f)
        },
    )?;
    assert_eq!(healed["missing"], 0);
    assert_eq!(healed["status"], "HEALTHY");
    let status = c.status()?;
    let dead = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"].as_u64() == Some(victim))
        .unwrap();
    assert_eq!(dead["state"], "dead");
    Ok(())
}
