//! Compiles Modal's pinned protos (`proto/`) with protox (no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/modal_proto/api.proto",
        "proto/modal_proto/task_command_router.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .generate_default_stubs(true)
        .server_mod_attribute(".", "#[cfg(feature = \"fake\")]")
        .compile_fds(fds)?;
    Ok(())
}
