fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("synthforge_descriptor.bin"))
        .compile_protos(&["proto/synthforge.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/synthforge.proto");
    Ok(())
}
