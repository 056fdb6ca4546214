//! Compiles `proto/trellis/*/v1/*.proto` with protox (no system `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../../proto";
    println!("cargo:rerun-if-changed={root}");
    let mut files: Vec<String> =
        ["auth", "rooms", "sync", "media"].iter().map(|svc| format!("trellis/{svc}/v1/{svc}.proto")).collect();
    files.push("trellis/auth/v1/keys.proto".to_owned());
    let fds = protox::compile(files, [root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".trellis.media.v1")
        // Keys' maps come out ordered, as the JSON objects they stand for: the keys service
        // works through them in ID order, and answers list them so.
        .btree_map(".trellis.keys.v1")
        .compile_fds(fds)?;
    Ok(())
}
