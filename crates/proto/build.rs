//! Generates the remote-write and Loki push protobuf types with prost, using the vendored
//! `protoc` so a fresh machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("prometheus/types.proto"),
        root.join("prometheus/remote.proto"),
        root.join("loki/push.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    prost_build::Config::new()
        .bytes(["."])
        .compile_protos(&files, &[root])?;
    Ok(())
}
