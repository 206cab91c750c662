//! `synthforge mock-backend`: serve until SIGTERM/Ctrl-C.

pub async fn run(args: synthforge_mock_backend::MockArgs) -> anyhow::Result<()> {
    let (addr, handle) = synthforge_mock_backend::spawn(args).await?;
    tracing::info!(%addr, "mock backend listening");
    super::shutdown_signal().await?;
    handle.abort();
    Ok(())
}
