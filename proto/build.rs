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
    // The descriptor set, for the daemon's Connect JSON mapping (`flagpole_proto::FILE_DESCRIPTOR_SET`).
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("flagpole_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::LeanCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
