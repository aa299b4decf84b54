//! The EMRFS role: `file://` object-store paths in every data command, and
//! `dfs cp` between schemes.

use basin_tests::{Cluster, Spec, random_bytes};

#[test]
fn copy_between_cluster_and_object_store() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 3,
        task: 0,
        ..Spec::default()
    })?;
    let data = random_bytes(5 * 1024 * 1024 + 9, 51);
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, &data)?;
    let bucket = c.dir.path().join("bucket");
    std::fs::create_dir_all(&bucket)?;
    let obj = format!("file://{}/raw/in.bin", bucket.display());

    c.ok(&["dfs", "put", local.to_str().unwrap(), &obj])?;
    assert!(std::fs::read(bucket.join("raw/in.bin"))? == data);
    c.ok(&["dfs", "cp", &obj, "basin:///copied.bin"])?;
    let back = format!("file://{}/back/copied.bin", bucket.display());
    c.ok(&["dfs", "cp", "/copied.bin", &back])?;
    assert!(std::fs::read(bucket.join("back/copied.bin"))? == data);

    let ls = c.json(&["dfs", "ls", &format!("file://{}/raw", bucket.display())])?;
    assert_eq!(ls[0]["length"].as_u64(), Some(data.len() as u64));
    let cat = c.basin(&["dfs", "cat", &obj]);
    assert!(cat.stdout == data);
    let out = c.dir.path().join("out.bin");
    c.ok(&["dfs", "get", &back, out.to_str().unwrap()])?;
    assert!(std::fs::read(&out)? == data);

    // Recursive copy of a directory of objects into the cluster.
    c.ok(&[
        "dfs",
        "cp",
        "-r",
        &format!("file://{}/raw", bucket.display()),
        "/fromobj",
    ])?;
    assert_eq!(
        c.json(&["dfs", "ls", "/fromobj"])?
            .as_array()
            .unwrap()
            .len(),
        1
    );
    c.ok(&["dfs", "rm", &obj])?;
    assert!(!bucket.join("raw/in.bin").exists());
    let o = c.basin(&["dfs", "cat", &obj]);
    assert!(!o.status.success());
    Ok(())
}
