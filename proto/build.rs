//! Compiles the project's `.proto` files with the pure-Rust `protox` compiler (no `protoc` needed) and
//! generates prost messages plus tonic clients and servers for every service, all using
//! `flagpole_proto::codec::LeanCodec` so that idle streams hold small buffers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/flagd/evaluation/v1/evaluation.proto",
        "proto/flagd/evaluation/v2/evaluation.proto",
        "proto/flagd/sync/v1/sync.proto",
        "proto/schema/v1/schema.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::LeanCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
