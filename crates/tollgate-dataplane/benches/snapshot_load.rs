//! Snapshot load at scale: how long a gateway takes to take in a snapshot of 100,000 and
//! 1,000,000 keys (each with its own budget, see `support/wire.rs`) and how much memory
//! it holds afterwards.
//!
//! Each size runs in a fresh child process so one size's heap does not colour the next.
//! The parent encodes the snapshot to protobuf bytes — what arrives over gRPC Watch — and
//! writes them to a file; the child builds a `DataPlane` exactly as the gateway binary
//! does, reads the bytes, decodes them, applies them, drops the message and the bytes, and
//! reports decode and apply time and its VmRSS / VmHWM from /proc/self/status. No control
//! plane or network is involved: this is the data plane's share of a load.
//!
//! `cargo bench -p tollgate-dataplane --bench snapshot_load` (sizes:
//! `TOLLGATE_BENCH_SNAPSHOT_KEYS=100000,1000000`, the default).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "support/wire.rs"]
mod wire;

use prost::Message;
use std::error::Error;
use std::process::Command;
use std::time::Instant;
use tollgate_dataplane::{Config, DataPlane};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory_kib() -> Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).ok_or(format!("no {name} in /proc/self/status"))?;
        Ok(line.trim_start_matches(name).trim().trim_end_matches("kB").trim().parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The child: load one encoded snapshot and report on one line.
fn load(path: &str, keys: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let _guard = rt.enter();
    let dp = DataPlane::new(Config::default())?;
    let (base, _) = memory_kib()?;
    let started = Instant::now();
    let bytes = std::fs::read(path)?;
    let read = started.elapsed();
    let t = Instant::now();
    let snapshot = tollgate_proto::v1::Snapshot::decode(bytes.as_slice())?;
    let decode = t.elapsed();
    let t = Instant::now();
    let problems = dp.apply(&snapshot);
    let apply = t.elapsed();
    if !problems.is_empty() || dp.snapshot().key_count() != keys {
        return Err(
            format!("snapshot did not load whole: {} keys, problems {problems:?}", dp.snapshot().key_count()).into()
        );
    }
    drop(snapshot);
    drop(bytes);
    let (after, peak) = memory_kib()?;
    println!(
        "| {keys} | {:.1} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
        mib(std::fs::metadata(path)?.len() / 1024),
        read.as_secs_f64() * 1e3,
        decode.as_secs_f64() * 1e3,
        apply.as_secs_f64() * 1e3,
        mib(base),
        mib(after),
        mib(after.saturating_sub(base)),
        mib(peak),
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--load-one") {
        let path = args.get(i + 1).ok_or("--load-one PATH KEYS")?;
        let keys = args.get(i + 2).ok_or("--load-one PATH KEYS")?.parse()?;
        return load(path, keys);
    }
    let sizes: Vec<usize> = std::env::var("TOLLGATE_BENCH_SNAPSHOT_KEYS")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().replace('_', "").parse())
        .collect::<std::result::Result<_, _>>()?;
    println!("snapshot load (decode + DataPlane::apply), one fresh process per size");
    println!();
    println!(
        "| keys | encoded MiB | read ms | decode ms | apply ms | RSS before MiB | RSS after MiB | RSS added MiB | VmHWM MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let exe = std::env::current_exe()?;
    for keys in sizes {
        let path = std::env::temp_dir().join(format!("tollgate-snapshot-{}-{keys}.pb", std::process::id()));
        let t = Instant::now();
        let encoded = wire::snapshot(keys).encode_to_vec();
        let build = t.elapsed();
        std::fs::write(&path, &encoded)?;
        drop(encoded);
        let status = Command::new(&exe).arg("--load-one").arg(&path).arg(keys.to_string()).status();
        let _ = std::fs::remove_file(&path);
        if !status?.success() {
            return Err(format!("loading {keys} keys failed").into());
        }
        eprintln!("({keys} keys: building and encoding the wire snapshot took {:.0} ms)", build.as_secs_f64() * 1e3);
    }
    Ok(())
}
