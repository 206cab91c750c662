//! The mock in a separate process (this binary re-executed with `serve-mock`), so that the
//! client's CPU time is measured apart from the server's.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use synthforge_mock_backend::MockArgs;

pub const SERVE_MOCK: &str = "serve-mock";

/// Child side: serve a zero-latency, unlimited-slot mock on a free port and print `LISTEN addr`.
pub async fn serve() -> anyhow::Result<()> {
    let args = MockArgs {
        addr: "127.0.0.1:0".parse()?,
        ..MockArgs::default()
    };
    let (addr, handle) = synthforge_mock_backend::spawn(args).await?;
    println!("LISTEN {addr}");
    handle.await?;
    Ok(())
}

/// A mock server process; killed on drop.
pub struct MockProcess {
    child: Child,
    pub base: String,
}

impl MockProcess {
    pub fn start() -> anyhow::Result<MockProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(SERVE_MOCK)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("LISTEN ")
            .ok_or_else(|| anyhow::anyhow!("mock process said `{line}`"))?
            .to_string();
        Ok(MockProcess {
            child,
            base: format!("http://{addr}"),
        })
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
