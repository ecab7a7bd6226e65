//! A tansu of a test's own on its durable sqlite storage: what `cargo xtask up` runs, where
//! the shared broker of `cargo xtask test` runs on memory.

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct SqliteBroker {
    child: Child,
    pub address: String,
}

impl SqliteBroker {
    /// Starts tansu with its sqlite storage in `dir` on a free port.
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, free_port())
    }

    /// Starts tansu with its sqlite storage in `dir` on `port` (a restart keeps the port).
    pub fn start_on(dir: &Path, port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(infra::testing::tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts (cargo xtask test installs it)");
        Self {
            child,
            address: format!("127.0.0.1:{port}"),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("a pid fits an i32")
    }
}

impl Drop for SqliteBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
