//! Generates tonic server stubs for Temporal's WorkflowService from the descriptor set
//! that `temporalio-protos` publishes (`links = "temporalio_protos"`), so no protoc is
//! needed. Message types are not generated: they come from `temporalio_common`, the
//! same types the client under test uses.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")?;
    println!("cargo:rerun-if-changed={path}");
    let bytes = std::fs::read(&path)?;
    let mut fds = prost_types::FileDescriptorSet::decode(bytes.as_slice())?;
    fds.file
        .retain(|f| f.name.as_deref() == Some("temporal/api/workflowservice/v1/service.proto"));
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .generate_default_stubs(true)
        .extern_path(".temporal", "::temporalio_common::protos::temporal")
        .compile_fds(fds)?;
    Ok(())
}
