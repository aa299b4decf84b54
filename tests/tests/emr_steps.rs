//! EMR steps on a transient cluster: `basin local up --steps F --terminate`
//! runs the steps in order, honours each step's action on failure, shuts
//! down, and exits with the steps' status.

use std::process::Command;

use basin_tests::basin_bin;

fn run(dir: &std::path::Path, steps: &str) -> std::process::Output {
    let f = dir.join("steps.yaml");
    std::fs::write(&f, steps).unwrap();
    Command::new(basin_bin())
        .args([
            "local",
            "up",
            "--data-dir",
            dir.join("cluster").to_str().unwrap(),
            "--steps",
            f.to_str().unwrap(),
            "--terminate",
        ])
        .output()
        .unwrap()
}

#[test]
fn transient_cluster_runs_steps_and_exits() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    std::fs::create_dir_all(d.join("in"))?;
    let text: String = (0..900)
        .map(|i| format!("red green blue{}\n", i % 3))
        .collect();
    std::fs::write(d.join("in/words.txt"), &text)?;
    let steps = format!(
        "steps:\n  - name: load\n    cp: {{src: \"file://{0}/in\", dst: /in, recursive: true}}\n  - name: count\n    job: {{input: [/in], output: /out, builtin: wordcount, reducers: 2}}\n  - name: sort the counts\n    job: {{input: [/out], output: /sorted, builtin: sort}}\n  - name: export\n    cp: {{src: /out, dst: \"file://{0}/out\", recursive: true}}\n",
        d.display()
    );
    let o = run(d, &steps);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout.matches("COMPLETED").count(), 4, "{stdout}");
    assert_eq!(
        stdout.matches("SUCCEEDED").count(),
        2,
        "two jobs ran: {stdout}"
    );
    let mut counts = String::new();
    for p in ["part-00000", "part-00001"] {
        counts.push_str(&std::fs::read_to_string(d.join("out").join(p))?);
    }
    let mut lines: Vec<&str> = counts.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "blue0\t300",
            "blue1\t300",
            "blue2\t300",
            "green\t900",
            "red\t900"
        ]
    );
    assert!(d.join("out/_SUCCESS").exists());

    // CONTINUE goes on; TERMINATE stops at once and the exit status says so.
    let failing = format!(
        "steps:\n  - name: missing input\n    job: {{input: [/nope], output: /x, builtin: wordcount}}\n    action_on_failure: CONTINUE\n  - name: load\n    cp: {{src: \"file://{0}/in\", dst: /in2, recursive: true}}\n  - name: bad job\n    job: {{input: [/in2], output: /y, mapper: \"exit 1\", reducer: cat, max_attempts: 1}}\n    action_on_failure: TERMINATE\n  - name: never\n    cp: {{src: /in2, dst: \"file://{0}/never\", recursive: true}}\n",
        d.display()
    );
    std::fs::remove_dir_all(d.join("cluster"))?;
    let o = run(d, &failing);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{stdout}");
    assert_eq!(stdout.matches("   FAILED: ").count(), 2, "{stdout}");
    assert!(stdout.contains("TERMINATING"), "{stdout}");
    assert!(!stdout.contains("step 4 of 4"), "{stdout}");
    assert!(!d.join("never").exists());

    // A malformed steps file is refused before anything starts.
    let o = run(d, "steps:\n  - name: x\n    jobb: {}\n");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad steps file"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}
