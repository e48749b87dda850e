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
//! Then, on the loaded gateway, what one signup and one revocation cost now that Watch
//! sends changes: the median `DataPlane::apply_update` of 20 changes minting a key with
//! its budget and of 20 revoking one, against one full re-apply of the snapshot that
//! holds them all (what every revision cost before changes), and the encoded size of a
//! mint change against the snapshot's.
//!
//! `cargo bench -p tollgate-dataplane --bench snapshot_load` (sizes:
//! `TOLLGATE_BENCH_SNAPSHOT_KEYS=100000,1000000`, the default).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "support/wire.rs"]
mod wire;

use prost::Message;
use std::error::Error;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;
use tollgate_dataplane::{Config, DataPlane, Update};
use tollgate_proto::v1;

/// Changes of each kind timed per size.
const CHANGES: usize = 20;

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

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples.get(samples.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Applies `change` as the next revision, checking it is taken whole; returns its time.
fn timed_change(dp: &DataPlane, mut change: v1::ConfigChange) -> Result<Duration> {
    change.from_revision = dp.snapshot().revision;
    change.revision = change.from_revision + 1;
    let t = Instant::now();
    let problems = dp.apply_update(Update::Change(&change))?;
    let took = t.elapsed();
    if !problems.is_empty() {
        return Err(format!("change not taken whole: {problems:?}").into());
    }
    Ok(took)
}

/// On a gateway holding `wire`: mint then revoke [`CHANGES`] keys as changes, then
/// apply the resulting snapshot whole. Prints the change row.
fn changes(dp: &DataPlane, mut wire: v1::Snapshot, keys: usize) -> Result<()> {
    let mut mints = Vec::with_capacity(CHANGES);
    let mut mint_bytes = 0;
    for i in keys..keys + CHANGES {
        let (key, budget) = wire::customer(i);
        let change = v1::ConfigChange {
            upsert_keys: vec![key.clone()],
            upsert_budgets: vec![budget.clone()],
            ..Default::default()
        };
        mint_bytes = change.encoded_len();
        mints.push(timed_change(dp, change)?);
        wire.keys.push(key);
        wire.budgets.push(budget);
    }
    let mut revokes = Vec::with_capacity(CHANGES);
    for key in wire.keys.iter_mut().skip(keys) {
        key.status = "revoked".into();
        revokes.push(timed_change(dp, v1::ConfigChange { upsert_keys: vec![key.clone()], ..Default::default() })?);
    }
    wire.revision = dp.snapshot().revision + 1;
    let t = Instant::now();
    let problems = dp.apply(&wire);
    let full = t.elapsed();
    if !problems.is_empty() || dp.snapshot().key_count() != keys + CHANGES {
        return Err(format!("full re-apply did not load whole: problems {problems:?}").into());
    }
    println!(
        "| {keys} | {:.0} | {:.3} | {:.3} | {mint_bytes} | {:.1} |",
        full.as_secs_f64() * 1e3,
        median_ms(mints),
        median_ms(revokes),
        mib(wire.encoded_len() as u64 / 1024),
    );
    Ok(())
}

/// The child: load one encoded snapshot and report on one line, then time changes on
/// the loaded gateway and report on a second.
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
    // After the memory figures: the changes need the wire snapshot again.
    changes(&dp, v1::Snapshot::decode(std::fs::read(path)?.as_slice())?, keys)
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
    let mut change_rows = Vec::new();
    for keys in sizes {
        let path = std::env::temp_dir().join(format!("tollgate-snapshot-{}-{keys}.pb", std::process::id()));
        let t = Instant::now();
        let encoded = wire::snapshot(keys).encode_to_vec();
        let build = t.elapsed();
        std::fs::write(&path, &encoded)?;
        drop(encoded);
        let out = Command::new(&exe).arg("--load-one").arg(&path).arg(keys.to_string()).output();
        let _ = std::fs::remove_file(&path);
        let out = out?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut rows = text.lines();
        if !out.status.success() {
            return Err(format!("loading {keys} keys failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        println!("{}", rows.next().unwrap_or_default());
        change_rows.extend(rows.map(str::to_owned));
        eprintln!("({keys} keys: building and encoding the wire snapshot took {:.0} ms)", build.as_secs_f64() * 1e3);
    }
    println!();
    println!(
        "one change on the loaded gateway (DataPlane::apply_update, median of {CHANGES}) vs a full re-apply of the snapshot"
    );
    println!();
    println!("| keys | full re-apply ms | mint change ms | revoke change ms | mint change bytes | snapshot MiB |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for row in change_rows {
        println!("{row}");
    }
    Ok(())
}
