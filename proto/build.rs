fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/basin.proto"];
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".basin.v1.WriteBlockMessage")
        .bytes(".basin.v1.ReadBlockChunk")
        .bytes(".basin.v1.StreamRecord")
        .bytes(".basin.v1.StoredRecord")
        .compile_fds(fds)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
