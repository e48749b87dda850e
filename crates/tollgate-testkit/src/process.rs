//! Running the real binaries in tests: free ports, spawn, wait until ready, kill on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where [`free_port`] hands ports out from: below Linux's ephemeral range (32768 and up),
/// so no listener bound to port 0 and no outgoing connection can take a port between our
/// check and the binary's bind — which is what made tests fail with "address in use"
/// while in-process servers and fake upstreams took ephemeral ports beside them.
const PORT_LOW: u32 = 20_000;
const PORT_SPAN: u32 = 12_000;
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// A free loopback port for a binary to bind, never the same twice in one test process
/// (bound then released; a port another program holds is skipped).
pub fn free_port() -> u16 {
    // Test binaries of one `cargo test` run one after another; the process id spreads
    // their starting points so a port a previous binary's child still holds is unlikely.
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..PORT_SPAN {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(PORT_LOW + start.wrapping_add(n) % PORT_SPAN).expect("port in range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A fresh, empty temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{tag}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// Another binary of the workspace, next to the one Cargo built for this test
/// (`cargo test --workspace` builds every binary before running tests).
pub fn sibling_binary(this_binary: &str, name: &str) -> PathBuf {
    let dir = Path::new(this_binary).parent().expect("binary has a directory");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is not built; run the tests with `cargo test --workspace`", path.display());
    path
}

/// A child process that is killed when dropped; its stderr goes to a log file that is
/// printed when the test panics.
pub struct Proc {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Proc {
    /// Starts `bin` with `args` and extra environment variables. `TOLLGATE_*` variables
    /// of the test's own environment are removed so each test is self-contained.
    pub fn spawn(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let name = bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let log = temp_dir("log").join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::null()).stdout(file.try_clone().expect("clone log")).stderr(file);
        for (k, _) in std::env::vars() {
            if k.starts_with("TOLLGATE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("TOLLGATE_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Proc { child, log, name }
    }

    /// The process id (to read its `/proc/<pid>/status`, for instance).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks the process to stop (SIGTERM) and waits up to `timeout` for it to exit
    /// cleanly, then kills it. Returns true when it exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Panics (with the process output) if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}:\n{}", self.name, self.output());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- output of {} -----\n{}\n-----", self.name, self.output());
        }
    }
}

/// Polls `url` until it answers 200, panicking with the process output after `timeout`.
pub async fn wait_ready(proc: &mut Proc, url: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        proc.assert_running();
        if let Some(resp) = try_get(url).await
            && resp == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} not ready after {timeout:?}:\n{}", proc.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn try_get(url: &str) -> Option<u16> {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    let client: Client<HttpConnector, Full<bytes::Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new());
    let req = http::Request::get(url).body(Full::default()).ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(2), client.request(req)).await.ok()?.ok()?;
    Some(resp.status().as_u16())
}

/// Retries `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
