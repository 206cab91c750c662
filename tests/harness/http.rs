//! Minimal blocking HTTP helpers for probing and poking local services.
//!
//! Proxies are disabled: a CI machine's `HTTP_PROXY` must never capture requests to 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::rt::block_on;

/// Per-request timeout: every target is local, so anything slower is a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("build HTTP client")
}

/// GET `url`, returning the status code and body (any status; errors only on transport failure).
pub fn http_get(url: &str) -> Result<(u16, String)> {
    request(reqwest::Method::GET, url, None)
}

/// PUT `body` to `url`, returning the status code and response body.
pub fn http_put(url: &str, body: Vec<u8>) -> Result<(u16, String)> {
    request(reqwest::Method::PUT, url, Some(body))
}

/// POST `body` to `url`, returning the status code and response body.
pub fn http_post(url: &str, body: Vec<u8>) -> Result<(u16, String)> {
    request(reqwest::Method::POST, url, Some(body))
}

fn request(method: reqwest::Method, url: &str, body: Option<Vec<u8>>) -> Result<(u16, String)> {
    block_on(|| async {
        let mut req = client()?.request(method.clone(), url);
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .with_context(|| format!("{method} {url}: body"))?;
        Ok((status, text))
    })
}

/// `method` `url` with extra `headers` (e.g. `Authorization`), returning the status code and body.
pub fn http_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<(u16, String)> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).context("HTTP method")?;
    block_on(|| async {
        let mut req = client()?.request(method.clone(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body.clone() {
            req = req.body(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.context("body")?;
        Ok((status, text))
    })
}

/// Whether GET `url` answers 2xx right now.
pub fn http_ok(url: &str) -> bool {
    matches!(http_get(url), Ok((200..=299, _)))
}

/// GET `url` and parse the body as JSON, failing on a non-2xx status.
pub fn http_get_json(url: &str) -> Result<serde_json::Value> {
    let (status, body) = http_get(url)?;
    anyhow::ensure!(
        (200..300).contains(&status),
        "GET {url}: status {status}: {body}"
    );
    serde_json::from_str(&body).with_context(|| format!("GET {url}: body is not JSON: {body}"))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn tcp_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
