//! Compiles the project's `.proto` files with the pure-Rust `protox` compiler (no `protoc` needed) and
//! generates prost messages plus tonic clients and servers for every service, all using
//! `flagpole_proto::codec::LeanCodec` so that idle streams hold small buffers.
//!
//! It also writes the descriptor set the daemon's Connect protocol maps JSON with
//! (`flagpole_proto::FILE_DESCRIPTOR_SET`), reduced to what that mapping reads: see [`for_json_mapping`].

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, MessageOptions,
};

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
        prost::Message::encode_to_vec(&for_json_mapping(descriptors.clone())),
    )?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::LeanCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// The descriptor set reduced to what JSON mapping by reflection reads: every option is removed except
/// `map_entry` (which makes a field a map), and a small file declares `google.protobuf.MessageOptions`
/// with that one field. The options removed (`deprecated`, the other languages' package names of
/// `struct.proto`) change nothing in JSON. Why: `prost_reflect` interprets every option it finds against
/// the options messages of the pool being built, and when the pool has none it builds its own global pool
/// of all of protobuf's well-known types (`descriptor.proto` included) and keeps it for the life of the
/// process: 540 KB, and the options themselves another 270 KB, on a daemon's first Connect request
/// (BENCHMARKS.md, "The first Connect request").
fn for_json_mapping(mut set: FileDescriptorSet) -> FileDescriptorSet {
    fn message(m: &mut DescriptorProto) {
        let map_entry = m.options.as_ref().and_then(|o| o.map_entry);
        m.options = map_entry.map(|map_entry| MessageOptions {
            map_entry: Some(map_entry),
            ..MessageOptions::default()
        });
        m.field.iter_mut().for_each(|f| f.options = None);
        m.extension.iter_mut().for_each(|f| f.options = None);
        m.oneof_decl.iter_mut().for_each(|o| o.options = None);
        m.extension_range.iter_mut().for_each(|r| r.options = None);
        m.nested_type.iter_mut().for_each(message);
        m.enum_type.iter_mut().for_each(|e| {
            e.options = None;
            e.value.iter_mut().for_each(|v| v.options = None);
        });
    }
    for file in &mut set.file {
        file.options = None;
        file.source_code_info = None;
        file.message_type.iter_mut().for_each(message);
        file.extension.iter_mut().for_each(|f| f.options = None);
        file.enum_type.iter_mut().for_each(|e| {
            e.options = None;
            e.value.iter_mut().for_each(|v| v.options = None);
        });
        file.service.iter_mut().for_each(|s| {
            s.options = None;
            s.method.iter_mut().for_each(|m| m.options = None);
        });
    }
    set.file.insert(
        0,
        FileDescriptorProto {
            name: Some("flagpole/map_entry_option.proto".into()),
            package: Some("google.protobuf".into()),
            syntax: Some("proto2".into()),
            message_type: vec![DescriptorProto {
                name: Some("MessageOptions".into()),
                field: vec![FieldDescriptorProto {
                    name: Some("map_entry".into()),
                    json_name: Some("mapEntry".into()),
                    number: Some(7),
                    label: Some(Label::Optional.into()),
                    r#type: Some(Type::Bool.into()),
                    ..FieldDescriptorProto::default()
                }],
                ..DescriptorProto::default()
            }],
            ..FileDescriptorProto::default()
        },
    );
    set
}
