//! Generates Strata's wire types with prost (remote write, Loki push) and the
//! gRPC services between roles with tonic, using the vendored `protoc` so a
//! fresh machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    // Read at run time: a build script compiled in another checkout of the
    // same target directory would otherwise point at that checkout.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        root.join("prometheus/types.proto"),
        root.join("prometheus/remote.proto"),
        root.join("io/prometheus/write/v2/types.proto"),
        root.join("loki/push.proto"),
        root.join("strata/ring.proto"),
        root.join("strata/ingester.proto"),
        root.join("strata/store_gateway.proto"),
        root.join("strata/frontend.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(config, &files, &[root])?;
    Ok(())
}
