//! Generates the gRPC code from `proto/` with a vendored protoc, so building needs no
//! system tools.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [root.join("tollgate/control/v1/control.proto"), root.join("tollgate/control/v1/security.proto")];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // Messages that carry secrets get hand-written, redacted Debug impls.
        .skip_debug([
            ".tollgate.control.v1.Snapshot",
            ".tollgate.control.v1.Provider",
            ".tollgate.control.v1.CreateKeyResponse",
            ".tollgate.control.v1.RotateKeyResponse",
            ".tollgate.control.v1.CreateTokenResponse",
            ".tollgate.control.v1.CreateProviderRequest",
            ".tollgate.control.v1.UpdateProviderRequest",
        ])
        // A key's view serializes itself, in the REST view's JSON shape (`hint` is
        // `key_hint` there), so tollctl prints a field added to `KeyInfo` with no edit.
        .type_attribute(".tollgate.control.v1.KeyInfo", "#[derive(serde::Serialize)]")
        .field_attribute(".tollgate.control.v1.KeyInfo.hint", "#[serde(rename = \"key_hint\")]")
        .compile_with_config(config, &files, &[root])?;
    Ok(())
}
