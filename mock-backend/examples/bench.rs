//! Throughput of the mock backend with zero latency, to check it is never the
//! bottleneck of a benchmark. Server and load generator share one process; the
//! client is a minimal HTTP/1.1 keep-alive loop so that most CPU goes to the
//! server.
//!
//! Usage: `cargo run --release -p synthforge-mock-backend --example bench -- [connections] [seconds] [slots]`
//! (defaults: 64 connections, 5 seconds, unlimited slots; after a 1 second warm-up).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synthforge_mock_backend::{spawn, MockArgs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv = std::env::args().skip(1);
    let connections: usize = argv.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let seconds: u64 = argv.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let slots: usize = argv.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(connections, seconds, slots))
}

async fn run(
    connections: usize,
    seconds: u64,
    slots: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let (addr, _server) = spawn(MockArgs {
        addr: "127.0.0.1:0".parse()?,
        slots,
        ..MockArgs::default()
    })
    .await?;
    let body = r#"{"model":"mock-model","messages":[{"role":"system","content":"You write short answers."},{"role":"user","content":"Explain why the sky is blue in two sentences."}],"max_tokens":64}"#;
    let request = Arc::new(format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (request, ok, stop) = (request.clone(), ok.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            client_loop(addr, request.as_bytes(), &ok, &stop).await
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (start_count, start) = (ok.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let done = ok.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    writeln!(
        std::io::stdout(),
        "{connections} connections, slots {slots}, {seconds} s: {done} responses, {:.0} req/s",
        done as f64 / elapsed
    )?;
    Ok(())
}

/// Sends the same request over one keep-alive connection until `stop`,
/// counting 200 responses; any other status is an error.
async fn client_loop(
    addr: SocketAddr,
    request: &[u8],
    ok: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(16 * 1024);
    while !stop.load(Ordering::Relaxed) {
        stream.write_all(request).await?;
        buf.clear();
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(total) = response_len(&buf) {
                if buf.len() >= total {
                    break;
                }
            }
        }
        if !buf.starts_with(b"HTTP/1.1 200") {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&buf).into_owned(),
            ));
        }
        ok.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Full length of the response in `buf` once its headers are complete.
fn response_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    })?;
    Some(head_end + len)
}
