//! MapReduce on the cluster: built-ins and streaming jobs end to end, the
//! commit protocol (_SUCCESS, no _temporary), counters, retries with logs,
//! and jobs that survive a worker's death and a master leader's death.

use std::collections::BTreeMap;
use std::time::Duration;

use basin_tests::{Cluster, Spec, stderr, wait_for};

/// Text with a known word count, lines of varying length so that splits cut lines.
fn corpus(lines: usize) -> (String, BTreeMap<String, u64>) {
    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    ];
    let mut text = String::new();
    let mut counts = BTreeMap::new();
    let mut x: u64 = 12345;
    for i in 0..lines {
        let n = 1 + (i % 9);
        let mut line = Vec::new();
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let w = format!("{}{}", words[(x % 10) as usize], x % 37);
            *counts.entry(w.clone()).or_insert(0) += 1;
            line.push(w);
        }
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    (text, counts)
}

fn read_output(c: &Cluster, dir: &str) -> BTreeMap<String, String> {
    let ls = c.json(&["dfs", "ls", dir]).unwrap();
    let mut out = BTreeMap::new();
    for e in ls.as_array().unwrap() {
        let p = e["path"].as_str().unwrap();
        if !p.contains("/part-") {
            continue;
        }
        for line in c.ok(&["dfs", "cat", p]).unwrap().lines() {
            let (k, v) = line.split_once('\t').unwrap_or((line, ""));
            assert!(
                out.insert(k.to_string(), v.to_string()).is_none(),
                "key {k} in two output files"
            );
        }
    }
    out
}

fn expected_strings(counts: &BTreeMap<String, u64>) -> BTreeMap<String, String> {
    counts
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

#[test]
fn wordcount_grep_and_sort_builtins() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 3,
        task: 1,
        ..Spec::default()
    })?;
    let (text, counts) = corpus(6000);
    let local = c.dir.path().join("words.txt");
    std::fs::write(&local, &text)?;
    c.ok(&["dfs", "mkdir", "-p", "/in"])?;
    // Small blocks: many splits, most of them cutting a line.
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "32768",
        local.to_str().unwrap(),
        "/in/words.txt",
    ])?;

    let job = c.json(&[
        "job",
        "submit",
        "--input",
        "/in",
        "--output",
        "/wc",
        "--builtin",
        "wordcount",
        "--reducers",
        "3",
        "--wait",
    ])?;
    assert_eq!(job["state"], "SUCCEEDED");
    assert!(job["maps"]["total"].as_u64().unwrap() > 5);
    assert_eq!(read_output(&c, "/wc"), expected_strings(&counts));
    let ls = c.ok(&["dfs", "ls", "/wc"])?;
    assert!(
        ls.contains("/wc/_SUCCESS") && !ls.contains("_temporary"),
        "{ls}"
    );
    let counters = &job["counters"];
    assert_eq!(
        counters["map_input_records"], 6000,
        "every line read exactly once"
    );
    assert_eq!(
        counters["reduce_output_records"].as_u64(),
        Some(counts.len() as u64)
    );
    let maps = job["maps"]["total"].as_i64().unwrap();
    let local_maps = counters["data_local_maps"].as_i64().unwrap_or(0);
    assert_eq!(
        local_maps + counters["remote_maps"].as_i64().unwrap_or(0),
        maps
    );
    assert!(
        local_maps > 0,
        "core workers hold the blocks: some maps must be data-local"
    );
    assert!(
        counters["combine_output_records"].as_i64() < counters["combine_input_records"].as_i64()
    );

    // grep counts matches of a pattern.
    c.ok(&[
        "job",
        "submit",
        "--input",
        "/in/words.txt",
        "--output",
        "/grep",
        "--builtin",
        "grep",
        "--pattern",
        "alpha[0-9]+",
        "--wait",
    ])?;
    let grep = read_output(&c, "/grep");
    let want: BTreeMap<String, String> = counts
        .iter()
        .filter(|(k, _)| k.starts_with("alpha"))
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(grep, want);

    // sort with one reducer: a total order by key.
    let unsorted: String = counts
        .keys()
        .rev()
        .map(|k| format!("{k}\t{}\n", counts[k]))
        .collect();
    std::fs::write(c.dir.path().join("unsorted.txt"), &unsorted)?;
    c.ok(&[
        "dfs",
        "put",
        c.dir.path().join("unsorted.txt").to_str().unwrap(),
        "/unsorted.txt",
    ])?;
    c.ok(&[
        "job",
        "submit",
        "--input",
        "/unsorted.txt",
        "--output",
        "/sorted",
        "--builtin",
        "sort",
        "--wait",
    ])?;
    let sorted = c.ok(&["dfs", "cat", "/sorted/part-00000"])?;
    let keys: Vec<&str> = sorted
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    let mut want_keys: Vec<&str> = counts.keys().map(String::as_str).collect();
    want_keys.sort();
    assert_eq!(keys, want_keys);

    // The output directory must not exist.
    let o = c.basin(&[
        "job",
        "submit",
        "--input",
        "/in",
        "--output",
        "/wc",
        "--builtin",
        "wordcount",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("output directory already exists: /wc"),
        "{}",
        stderr(&o)
    );
    let list = c.json(&["job", "list"])?;
    assert_eq!(list.as_array().unwrap().len(), 3);
    Ok(())
}

#[test]
fn streaming_jobs_with_files_retries_and_logs() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 3,
        task: 1,
        ..Spec::default()
    })?;
    let (text, counts) = corpus(3000);
    let local = c.dir.path().join("words.txt");
    std::fs::write(&local, &text)?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "65536",
        local.to_str().unwrap(),
        "/words.txt",
    ])?;
    let mapper = c.dir.path().join("split-words.sh");
    std::fs::write(
        &mapper,
        "#!/bin/sh\ntr -s ' ' '\\n' | awk 'NF { print $1 \"\\t1\" }'\n",
    )?;
    let reducer = "awk -F'\\t' '{ s[$1] += $2 } END { for (k in s) print k \"\\t\" s[k] }'";
    c.ok(&[
        "job",
        "submit",
        "--input",
        "/words.txt",
        "--output",
        "/stream",
        "--file",
        mapper.to_str().unwrap(),
        "--mapper",
        "./split-words.sh",
        "--combiner",
        reducer,
        "--reducer",
        reducer,
        "--reducers",
        "2",
        "--wait",
    ])?;
    assert_eq!(read_output(&c, "/stream"), expected_strings(&counts));

    // A mapper that fails on one poisoned line: retried on other workers, then
    // the job fails with the reason, and the attempts' stderr is kept.
    let poisoned = c.dir.path().join("poisoned.txt");
    std::fs::write(
        &poisoned,
        format!(
            "{}POISON line\n{}",
            &text[..text.len() / 2],
            &text[text.len() / 2..]
        ),
    )?;
    c.ok(&["dfs", "put", poisoned.to_str().unwrap(), "/poisoned.txt"])?;
    let o = c.basin(&[
        "job",
        "submit",
        "--input",
        "/poisoned.txt",
        "--output",
        "/bad",
        "--mapper",
        "awk '/POISON/ { print \"mapper-broke on: \" $0 > \"/dev/stderr\"; exit 7 } { print $1 \"\\t1\" }'",
        "--reducer",
        "cat",
        "--max-attempts",
        "3",
        "--wait",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("FAILED") && err.contains("failed 3 times") && err.contains("exit status: 7"),
        "{err}"
    );
    let id = c
        .json(&["job", "list"])?
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["output"] == "/bad")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let logs = c.ok(&["job", "logs", &id.to_string()])?;
    assert!(logs.matches("mapper-broke").count() >= 3, "{logs}");
    let workers: std::collections::BTreeSet<&str> = logs
        .lines()
        .filter(|l| l.starts_with("== map 0"))
        .filter_map(|l| l.split("on node ").nth(1))
        .collect();
    assert!(
        workers.len() >= 2,
        "retries should move to other workers: {logs}"
    );
    let bad = c.ok(&["dfs", "ls", "-R", "/bad"])?;
    assert!(
        !bad.contains("_SUCCESS") && !bad.contains("part-"),
        "no partial result: {bad}"
    );
    Ok(())
}

fn slow_job(c: &Cluster, output: &str) -> anyhow::Result<u64> {
    let job = c.json(&[
        "job",
        "submit",
        "--input",
        "/in",
        "--output",
        output,
        "--split-size",
        "20000",
        "--mapper",
        "sleep 1; tr -s ' ' '\\n' | awk 'NF { print $1 \"\\t1\" }'",
        "--reducer",
        "awk -F'\\t' '{ s[$1] += $2 } END { for (k in s) print k \"\\t\" s[k] }'",
        "--reducers",
        "2",
    ])?;
    Ok(job["id"].as_u64().unwrap())
}

fn job_state(c: &Cluster, id: u64) -> Option<serde_json::Value> {
    c.json(&["job", "status", &id.to_string()]).ok()
}

fn part_bytes(c: &Cluster, dir: &str) -> Vec<Vec<u8>> {
    ["part-00000", "part-00001"]
        .iter()
        .map(|p| c.basin(&["dfs", "cat", &format!("{dir}/{p}")]).stdout)
        .collect()
}

/// Expected counts, reference output bytes, and the running job's id.
type SlowJob = (BTreeMap<String, u64>, Vec<Vec<u8>>, u64);

/// Loads a corpus into /in, runs the slow job once undisturbed (the
/// reference bytes), then starts it again into /out for the fault to hit.
fn start_slow_job(c: &Cluster, lines: usize) -> anyhow::Result<SlowJob> {
    let (text, counts) = corpus(lines);
    let local = c.dir.path().join("w.txt");
    std::fs::write(&local, &text)?;
    c.ok(&["dfs", "mkdir", "/in"])?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "65536",
        local.to_str().unwrap(),
        "/in/w.txt",
    ])?;
    let reference = undisturbed(c)?;
    let id = slow_job(c, "/out")?;
    Ok((counts, reference, id))
}

/// The same job run without faults, for a byte-for-byte comparison.
fn undisturbed(c: &Cluster) -> anyhow::Result<Vec<Vec<u8>>> {
    let id = slow_job(c, "/reference")?;
    let s = wait_for("the undisturbed run", Duration::from_secs(120), || {
        let s = job_state(c, id)?;
        (s["state"] != "RUNNING" && s["state"] != "PREP").then_some(s)
    })?;
    assert_eq!(s["state"], "SUCCEEDED");
    Ok(part_bytes(c, "/reference"))
}

#[test]
fn job_survives_worker_death() -> anyhow::Result<()> {
    let mut c = Cluster::start(Spec {
        core: 4,
        task: 1,
        ..Spec::default()
    })?;
    let (counts, reference, id) = start_slow_job(&c, 4000)?;
    // Once some maps are done, kill a worker that ran one (its map output is lost).
    wait_for("some maps done", Duration::from_secs(60), || {
        (job_state(&c, id)?["maps"]["done"].as_u64()? >= 2).then_some(())
    })?;
    let ids: Vec<(String, u64)> = c
        .workers
        .iter()
        .map(|w| (w.name.clone(), c.node_id(&w.name).unwrap()))
        .collect();
    let logs = c.ok(&["job", "logs", &id.to_string()])?;
    let victim = ids
        .iter()
        .find(|(_, n)| logs.contains(&format!("on node {n} [SUCCEEDED]")))
        .map(|(name, _)| name.clone())
        .expect("a worker with a finished map");
    c.worker(&victim).kill9();
    let done = wait_for("the job to finish", Duration::from_secs(120), || {
        let s = job_state(&c, id)?;
        (s["state"] != "RUNNING" && s["state"] != "PREP").then_some(s)
    })?;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    assert_eq!(read_output(&c, "/out"), expected_strings(&counts));
    assert!(
        part_bytes(&c, "/out") == reference,
        "output differs from an undisturbed run"
    );
    Ok(())
}

#[test]
fn job_survives_leader_master_death() -> anyhow::Result<()> {
    let mut c = Cluster::start(Spec {
        masters: 3,
        core: 3,
        task: 1,
        ..Spec::default()
    })?;
    let (counts, reference, id) = start_slow_job(&c, 3000)?;
    wait_for("the job under way", Duration::from_secs(60), || {
        (job_state(&c, id)?["maps"]["done"].as_u64()? >= 1).then_some(())
    })?;
    let leader = c.status()?["leader"]["id"].as_u64().unwrap() as usize;
    c.masters[leader - 1].kill9();
    let done = wait_for(
        "the job to finish under a new leader",
        Duration::from_secs(120),
        || {
            let s = job_state(&c, id)?;
            (s["state"] != "RUNNING" && s["state"] != "PREP").then_some(s)
        },
    )?;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    assert_eq!(read_output(&c, "/out"), expected_strings(&counts));
    assert!(
        part_bytes(&c, "/out") == reference,
        "output differs from an undisturbed run"
    );
    assert_ne!(
        c.status()?["leader"]["id"].as_u64().unwrap() as usize,
        leader
    );
    Ok(())
}

#[test]
fn stragglers_get_speculative_attempts() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 3,
        task: 1,
        ..Spec::default()
    })?;
    let (text, counts) = corpus(2000);
    std::fs::write(c.dir.path().join("w.txt"), &text)?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "16384",
        c.dir.path().join("w.txt").to_str().unwrap(),
        "/w.txt",
    ])?;
    // Map 0's first attempt hangs (its working directory ends in _a0); any
    // other attempt runs at full speed. Only a speculative attempt can finish it.
    let mapper = "case \"$PWD\" in *m00000_a0/*) sleep 600;; esac; tr -s ' ' '\\n' | awk 'NF { print $1 \"\\t1\" }'";
    let job = c.json(&[
        "job",
        "submit",
        "--input",
        "/w.txt",
        "--output",
        "/spec",
        "--mapper",
        mapper,
        "--reducer",
        "awk -F'\\t' '{ s[$1] += $2 } END { for (k in s) print k \"\\t\" s[k] }'",
        "--wait",
    ])?;
    assert_eq!(job["state"], "SUCCEEDED");
    assert_eq!(read_output(&c, "/spec"), expected_strings(&counts));
    let logs = c.ok(&["job", "logs", &job["id"].to_string()])?;
    assert!(
        logs.contains("== map 0 attempt 1"),
        "a speculative attempt of map 0 ran: {logs}"
    );
    assert!(
        logs.contains("== map 0 attempt 0") && logs.contains("[KILLED]"),
        "the straggler was killed: {logs}"
    );
    Ok(())
}

#[test]
fn teragen_terasort_teravalidate() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 3,
        task: 1,
        ..Spec::default()
    })?;
    let records = 20_000u64;
    let generated = c.json(&[
        "job",
        "submit",
        "--builtin",
        "teragen",
        "--records",
        &records.to_string(),
        "--maps",
        "3",
        "--output",
        "/tera/in",
        "--wait",
    ])?;
    assert_eq!(generated["state"], "SUCCEEDED", "{generated}");
    let du = c.json(&["dfs", "du", "-s", "/tera/in"])?;
    assert_eq!(du[0]["length"].as_u64(), Some(records * 100));

    // Small splits cut records: every record must still be read exactly once.
    let sort = c.json(&[
        "job",
        "submit",
        "--builtin",
        "terasort",
        "--input",
        "/tera/in",
        "--output",
        "/tera/out",
        "--reducers",
        "3",
        "--split-size",
        "250050",
        "--wait",
    ])?;
    assert_eq!(sort["state"], "SUCCEEDED", "{sort}");
    assert_eq!(
        sort["counters"]["map_input_records"].as_u64(),
        Some(records)
    );
    assert_eq!(
        sort["counters"]["reduce_output_records"].as_u64(),
        Some(records)
    );

    let validate = |input: &str, output: &str| -> anyhow::Result<BTreeMap<String, String>> {
        c.json(&[
            "job",
            "submit",
            "--builtin",
            "teravalidate",
            "--input",
            input,
            "--output",
            output,
            "--wait",
        ])?;
        Ok(read_output(&c, output))
    };
    let sorted = validate("/tera/out", "/tera/check-sorted")?;
    let unsorted = validate("/tera/in", "/tera/check-input")?;
    assert_eq!(sorted["records"], records.to_string());
    assert_eq!(
        sorted["unsorted"], "0",
        "terasort output is in total order: {sorted:?}"
    );
    assert_eq!(
        sorted["checksum"], unsorted["checksum"],
        "same records, same checksum"
    );
    assert_ne!(unsorted["unsorted"], "0", "teragen output is not sorted");
    Ok(())
}

#[test]
fn awkward_inputs_and_clear_errors() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 3,
        task: 0,
        ..Spec::default()
    })?;
    // Empty input: the job succeeds with empty output.
    let empty = c.dir.path().join("empty.txt");
    std::fs::write(&empty, b"")?;
    c.ok(&["dfs", "put", empty.to_str().unwrap(), "/empty.txt"])?;
    let j = c.json(&[
        "job",
        "submit",
        "--input",
        "/empty.txt",
        "--output",
        "/o-empty",
        "--builtin",
        "wordcount",
        "--wait",
    ])?;
    assert_eq!(j["state"], "SUCCEEDED");
    assert!(read_output(&c, "/o-empty").is_empty());

    // A 5 MiB line and non-UTF-8 bytes, split into small pieces.
    let mut data = Vec::new();
    data.extend_from_slice(b"short line\n");
    data.extend_from_slice(&b"word ".repeat(1024 * 1024));
    data.extend_from_slice(b"\n\xff\xfe bin\x80ary \xff\xfe\n");
    let big = c.dir.path().join("big.txt");
    std::fs::write(&big, &data)?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        big.to_str().unwrap(),
        "/big.txt",
    ])?;
    let j = c.json(&[
        "job",
        "submit",
        "--input",
        "/big.txt",
        "--output",
        "/o-big",
        "--builtin",
        "wordcount",
        "--reducers",
        "2",
        "--wait",
    ])?;
    assert_eq!(j["state"], "SUCCEEDED", "{j}");
    assert_eq!(
        j["counters"]["map_input_records"], 3,
        "three lines, each read once"
    );
    let mut counts: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    for p in ["/o-big/part-00000", "/o-big/part-00001"] {
        let o = c.basin(&["dfs", "cat", p]);
        for line in o.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let i = line.iter().rposition(|b| *b == b'\t').unwrap();
            counts.insert(
                line[..i].to_vec(),
                String::from_utf8_lossy(&line[i + 1..]).to_string(),
            );
        }
    }
    assert_eq!(
        counts.get(b"word".as_slice()).map(String::as_str),
        Some("1048576")
    );
    assert_eq!(
        counts.get(b"\xff\xfe".as_slice()).map(String::as_str),
        Some("2")
    );
    assert_eq!(
        counts.get(b"bin\x80ary".as_slice()).map(String::as_str),
        Some("1")
    );
    // The same through a streaming identity mapper (cat) and a counting reducer.
    let j = c.json(&[
        "job",
        "submit",
        "--input",
        "/big.txt",
        "--output",
        "/o-big-stream",
        "--mapper",
        "tr -s ' ' '\\n' | awk 'NF { print $0 \"\\t1\" }'",
        "--reducer",
        "awk -F'\\t' '{ s[$1] += $2 } END { for (k in s) print k \"\\t\" s[k] }'",
        "--wait",
    ])?;
    assert_eq!(j["state"], "SUCCEEDED", "{j}");
    assert!(
        c.ok(&["dfs", "cat", "/o-big-stream/part-00000"])?
            .contains("word\t1048576")
    );

    // Missing input and a bad built-in: clear errors, no job, no output.
    let o = c.basin(&[
        "job",
        "submit",
        "--input",
        "/missing",
        "--output",
        "/o-missing",
        "--builtin",
        "wordcount",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no such file or directory: /missing"),
        "{}",
        stderr(&o)
    );
    let o = c.basin(&[
        "job",
        "submit",
        "--input",
        "/big.txt",
        "--output",
        "/o-x",
        "--builtin",
        "nope",
    ]);
    assert!(stderr(&o).contains("unknown built-in"), "{}", stderr(&o));
    assert!(c.basin(&["dfs", "stat", "/o-missing"]).status.code() != Some(0));
    Ok(())
}
