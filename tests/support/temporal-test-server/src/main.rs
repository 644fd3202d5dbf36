//! The Temporal test server as a standalone process, for end-to-end tests of the built
//! binary and for benchmarks: `temporal-test-server [--listen 127.0.0.1:7233]`.
//! Prints `listening on <addr>` once ready and runs until SIGINT or SIGTERM.

use temporal_test_server::TestServer;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:7233".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            other => {
                eprintln!("usage: temporal-test-server [--listen ADDR] (unknown argument {other})");
                std::process::exit(64);
            }
        }
    }
    let addr = listen.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{listen}: {e}"))
    })?;
    let server = TestServer::start_on(addr).await?;
    println!("listening on {}", server.addr());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.stop().await;
    Ok(())
}
