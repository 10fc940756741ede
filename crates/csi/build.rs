//! Generates the tonic bindings of `proto/csi.proto` with protox, so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/csi.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().build_client(true).compile_fds(fds)?;
    Ok(())
}
