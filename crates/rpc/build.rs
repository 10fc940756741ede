//! Generates the tonic bindings of `proto/cistern.proto` with protox (a protobuf compiler in
//! Rust), so building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/cistern.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().bytes(".cistern.v1.ReadReply.data").compile_fds(fds)?;
    Ok(())
}
