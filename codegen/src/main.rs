//! Regenerates the protobuf/gRPC code that plugwire checks in.
//!
//! `plugwire-codegen` rewrites the generated files; `plugwire-codegen --check` regenerates into a
//! temporary directory and fails if any checked-in file differs. Protos are compiled by `protox`,
//! so no system `protoc` is needed.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use prost::Message;

/// One proto package compiled into one Rust module plus its descriptor set.
struct Group {
    /// Proto files, relative to `proto/`.
    files: &'static [&'static str],
    /// The proto package (names the file tonic-prost-build writes).
    package: &'static str,
    /// Where the Rust module goes, relative to the workspace root.
    rust_out: &'static str,
    /// Where the encoded `FileDescriptorSet` (imports included) goes, for gRPC reflection.
    descriptor_out: &'static str,
    /// `bytes` fields generated as `bytes::Bytes` instead of `Vec<u8>`: a large value is then
    /// shared, not copied, when a message is built from it again, and decoded without a copy.
    shared_bytes: &'static [&'static str],
}

const GROUPS: &[Group] = &[
    Group {
        files: &[
            "plugin/grpc_broker.proto",
            "plugin/grpc_controller.proto",
            "plugin/grpc_stdio.proto",
        ],
        package: "plugin",
        rust_out: "crates/plugwire-runtime/src/pb/plugin.rs",
        descriptor_out: "crates/plugwire-runtime/src/pb/plugin_descriptor.bin",
        shared_bytes: &[],
    },
    Group {
        files: &["examples/kv.proto"],
        package: "proto",
        rust_out: "examples/src/pb/kv.rs",
        descriptor_out: "examples/src/pb/kv_descriptor.bin",
        // Terraform-style values (configs, states, blobs) of megabytes, sent again and again.
        shared_bytes: &[".proto.GetResponse.value", ".proto.PutRequest.value"],
    },
    Group {
        files: &["examples/counter.proto"],
        package: "proto",
        rust_out: "examples/src/pb/counter.rs",
        descriptor_out: "examples/src/pb/counter_descriptor.bin",
        shared_bytes: &[],
    },
    Group {
        files: &["examples/streamer.proto"],
        package: "proto",
        rust_out: "examples/src/pb/streamer.rs",
        descriptor_out: "examples/src/pb/streamer_descriptor.bin",
        shared_bytes: &[],
    },
    Group {
        files: &["bench/bench.proto"],
        package: "plugwire.bench",
        rust_out: "interop/src/pb/bench.rs",
        descriptor_out: "interop/src/pb/bench_descriptor.bin",
        shared_bytes: &[],
    },
    Group {
        files: &["test/grpctest.proto"],
        package: "grpctest",
        rust_out: "interop/src/pb/grpctest.rs",
        descriptor_out: "interop/src/pb/grpctest_descriptor.bin",
        shared_bytes: &[],
    },
];

fn main() -> Result<()> {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => bail!("unknown argument {other:?}; usage: plugwire-codegen [--check]"),
    };
    let root = workspace_root();
    let scratch = tempfile::tempdir()?;
    let mut stale = Vec::new();
    for group in GROUPS {
        let (rust, descriptor) = generate(&root, group, scratch.path())?;
        for (rel, bytes) in [(group.rust_out, rust), (group.descriptor_out, descriptor)] {
            let path = root.join(rel);
            let current = fs::read(&path).ok();
            if current.as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            if check {
                stale.push(rel);
            } else {
                fs::create_dir_all(path.parent().context("output has a parent")?)?;
                fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {rel}");
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "generated code is stale: {}\nrun `make codegen` and commit the result",
            stale.join(", ")
        );
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the codegen crate lives one level below the workspace root")
        .to_path_buf()
}

/// Compiles one group and returns (Rust source, encoded descriptor set).
fn generate(root: &Path, group: &Group, scratch: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let proto_dir = root.join("proto");
    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true).include_source_info(true);
    compiler
        .open_files(group.files)
        .with_context(|| format!("compiling {:?}", group.files))?;
    let fds = compiler.file_descriptor_set();

    let out = scratch.join(group.rust_out.replace('/', "_"));
    fs::create_dir_all(&out)?;
    let mut builder = tonic_prost_build::configure();
    for path in group.shared_bytes {
        builder = builder.bytes(*path);
    }
    builder
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .out_dir(&out)
        .compile_fds(fds.clone())
        .with_context(|| format!("generating Rust for {:?}", group.files))?;
    let rust = fs::read(out.join(format!("{}.rs", group.package)))?;

    // Reflection needs every file the services reference; source info only bloats it.
    let mut descriptor = fds;
    for file in &mut descriptor.file {
        file.source_code_info = None;
    }
    Ok((rust, descriptor.encode_to_vec()))
}
