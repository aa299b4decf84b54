//! TLS on every gRPC listener: a cluster started with `--tls-cert/--tls-key`
//! serves clients that trust its CA, and refuses plain-text clients.

use basin_tests::{Cluster, Spec, stderr};

#[test]
fn cluster_over_tls() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.signing_key.serialize_pem())?;
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let spec = Spec {
        core: 3,
        task: 0,
        server_args: vec![
            "--tls-cert".into(),
            cert.clone(),
            "--tls-key".into(),
            key,
            "--tls-ca".into(),
            cert.clone(),
        ],
        client_args: vec!["--tls-ca".into(), cert],
        ..Spec::default()
    };
    let c = Cluster::start(spec)?;
    let data = c.put_random(
        "/tls.bin",
        2 * 1024 * 1024 + 5,
        61,
        &["--block-size", "1048576"],
    )?;
    let out = c.dir.path().join("out.bin");
    c.ok(&["dfs", "get", "/tls.bin", out.to_str().unwrap()])?;
    assert!(std::fs::read(&out)? == data);
    for (_, reps) in c.block_replicas("/tls.bin")? {
        assert_eq!(reps.len(), 3);
    }

    // A plain-text client cannot talk to it.
    let o = std::process::Command::new(basin_tests::basin_bin())
        .args([
            "--master",
            &c.master_list(),
            "--token",
            &c.token,
            "--timeout",
            "2s",
            "dfs",
            "ls",
            "/",
        ])
        .output()?;
    assert!(
        !o.status.success(),
        "plain-text client was served: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    Ok(())
}
