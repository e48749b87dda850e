//! The ledger log: what survives the process being killed, and what the log keeps on disk.

use crate::support::{TempDir, config, entry};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::Money;
use tollgate_metering::{LedgerConfig, LedgerEntry, LedgerWriter, MemorySink, Usage, UsageSource};

/// Set in the child process of the crash tests: the directory it works in.
const CHILD_ENV: &str = "TOLLGATE_LEDGER_CRASH_CHILD";
const SETTLED: usize = 60;
const RECORDED: usize = 25;
const IN_FLIGHT: usize = 40;
const VOIDED: usize = 15;

/// What the gateway knows at dispatch: the prompt's estimate and its cost, no output.
fn intent_of(e: &LedgerEntry) -> LedgerEntry {
    e.clone()
        .with_usage(&Usage { input_tokens: e.input_tokens, ..Usage::default() }, UsageSource::Estimated)
        .with_cost(Money::from_nanos(2_500_000))
}

/// Everything in memory, nothing written to the sink or the spool: the write-behind
/// buffer a `kill -9` used to lose.
fn crash_config(dir: &TempDir) -> LedgerConfig {
    LedgerConfig {
        max_batch: 100_000,
        max_queue: 100_000,
        max_delay: Duration::from_secs(3600),
        journal_dir: Some(dir.journal()),
        ..config(dir)
    }
}

/// The child half of `a_killed_gateway_loses_no_answered_request_and_recovers_those_in_flight`:
/// run by the parent as a separate process (this test binary, filtered to this test) and
/// killed with SIGKILL once it says CHILD-READY. Run directly, without the variable, it has
/// nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = TempDir::at(dir.into());
    let sink = Arc::new(MemorySink::new());
    let (writer, _task) = LedgerWriter::start(sink, crash_config(&dir)).unwrap();
    // Answered: intent at dispatch, settled before the last byte.
    for seq in 0..SETTLED {
        let done = entry(0, seq);
        let intent = writer.intent(&intent_of(&done));
        writer.settle(intent, done).unwrap();
    }
    // Entries with no intent (refused before dispatch, say).
    for seq in 0..RECORDED {
        writer.record(entry(1, seq)).unwrap();
    }
    // Dispatched, served by the upstream, never settled.
    let in_flight: Vec<_> = (0..IN_FLIGHT).map(|seq| writer.intent(&intent_of(&entry(2, seq)))).collect();
    // Never reached an upstream.
    for seq in 0..VOIDED {
        drop(writer.intent(&intent_of(&entry(3, seq))));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "CHILD-READY").unwrap();
    out.flush().unwrap();
    drop(out);
    tokio::time::sleep(Duration::from_secs(120)).await;
    drop(in_flight);
    std::mem::forget(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_loses_no_answered_request_and_recovers_those_in_flight() {
    let dir = TempDir::new("kill9");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "journal::crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.trim_end().ends_with("CHILD-READY"))
    });
    let ready = tokio::time::timeout(Duration::from_secs(60), ready).await;
    // SIGKILL: no destructor, drop guard or shutdown runs in the child.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(matches!(ready, Ok(Ok(true))), "the child never got ready");

    let sink = Arc::new(MemorySink::new());
    let (writer, task) = LedgerWriter::start(sink.clone(), crash_config(&dir)).unwrap();
    let found = writer.journal_recovery();
    assert_eq!(
        (found.settled, found.recovered, found.voided),
        ((SETTLED + RECORDED) as u64, IN_FLIGHT as u64, VOIDED as u64),
        "{found:?}"
    );
    assert_eq!((writer.recovered(), writer.stats().recovered), (IN_FLIGHT as u64, IN_FLIGHT as u64));
    writer.shutdown().await.unwrap();
    task.await.unwrap();

    let stored = sink.entries();
    let find = |id: &str| stored.iter().find(|e| e.request_id == id);
    for seq in 0..SETTLED {
        assert_eq!(find(&entry(0, seq).request_id), Some(&entry(0, seq)), "settled entry {seq}");
    }
    for seq in 0..RECORDED {
        assert_eq!(find(&entry(1, seq).request_id), Some(&entry(1, seq)), "recorded entry {seq}");
    }
    for seq in 0..IN_FLIGHT {
        let mut want = intent_of(&entry(2, seq));
        want.usage_source = UsageSource::Recovered;
        assert_eq!(find(&want.request_id), Some(&want), "in-flight request {seq} is settled as recovered");
    }
    for seq in 0..VOIDED {
        assert_eq!(find(&entry(3, seq).request_id), None, "voided request {seq} never reached an upstream");
    }
    assert_eq!(stored.len(), SETTLED + RECORDED + IN_FLIGHT, "nothing else, nothing twice");
}
