//! The ledger log: what survives the process being killed, and what the log keeps on disk.

use crate::support::{TempDir, config, entry};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::Money;
use tollgate_metering::{
    LedgerConfig, LedgerEntry, LedgerSink, LedgerWriter, MemorySink, SinkFuture, Usage, UsageSource,
};

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
    if std::env::var_os(LOAD_ENV).is_some() {
        return load_child(dir.into()).await;
    }
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

fn segments(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.journal())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("ledger-") && n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

/// The number of the newest segment file.
fn newest_seq(dir: &TempDir) -> u64 {
    let newest = segments(dir).pop().unwrap();
    newest.trim_start_matches("ledger-").trim_end_matches(".log").parse().unwrap()
}

fn journal_config(dir: &TempDir) -> LedgerConfig {
    LedgerConfig {
        journal_dir: Some(dir.journal()),
        journal_rotate: Duration::from_millis(10),
        fsync: "interval:2".parse().unwrap(),
        ..config(dir)
    }
}

/// One log line as the brief fixes it: `{"t": kind, "e": entry}` or `{"t":"void","id":..}`.
fn line(kind: &str, e: &LedgerEntry) -> String {
    if kind == "void" {
        serde_json::json!({"t": "void", "id": e.request_id}).to_string()
    } else {
        serde_json::json!({"t": kind, "e": e}).to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fsync_policy_writes_json_lines_before_the_call_returns() {
    for policy in ["always", "never", "interval:5"] {
        let dir = TempDir::new("format");
        let sink = Arc::new(MemorySink::new());
        let cfg = LedgerConfig {
            journal_dir: Some(dir.journal()),
            fsync: policy.parse().unwrap(),
            max_delay: Duration::from_secs(3600),
            ..config(&dir)
        };
        let (writer, task) = LedgerWriter::start(sink.clone(), cfg).unwrap();
        let (answered, voided, plain) = (entry(0, 0), entry(0, 1), entry(0, 2));
        let intent = writer.intent(&intent_of(&answered));
        assert!(intent.is_logged(), "{policy}");
        writer.settle(intent, answered.clone()).unwrap();
        drop(writer.intent(&intent_of(&voided)));
        writer.record(plain.clone()).unwrap();

        // Nothing reached the sink yet (an hour's batching delay): the log has it all.
        assert!(sink.is_empty());
        let names = segments(&dir);
        assert_eq!(names.len(), 1, "{policy}: {names:?}");
        let text = std::fs::read_to_string(dir.journal().join(&names[0])).unwrap();
        let want = [
            line("intent", &intent_of(&answered)),
            line("settled", &answered),
            line("intent", &intent_of(&voided)),
            line("void", &voided),
            line("settled", &plain),
        ];
        let got: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let want: Vec<serde_json::Value> = want.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(got, want, "{policy}");
        assert!(text.ends_with('\n'));
        writer.shutdown().await.unwrap();
        task.await.unwrap();
        assert_eq!(sink.len(), 2, "{policy}");
        assert_eq!(writer.stats().journal_failures, 0);
    }
}

const OLD_SEGMENTS: [&str; 2] = ["ledger-00000000000000000007.log", "ledger-00000000000000000008.log"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_and_a_corrupt_line_are_counted_and_the_rest_recovered() {
    let dir = TempDir::new("torn-log");
    std::fs::create_dir_all(dir.journal()).unwrap();
    let (a, b, c, d) = (entry(0, 0), entry(0, 1), entry(0, 2), entry(0, 3));
    let first = [line("intent", &intent_of(&a)), line("intent", &intent_of(&b)), line("intent", &intent_of(&c))];
    let first = first.join("\n") + "\n" + &line("settled", &a) + "\n" + &line("void", &b) + "\n";
    std::fs::write(dir.journal().join(OLD_SEGMENTS[0]), first).unwrap();
    // The second segment: a line that is not a record, then the settled line of `c` cut
    // in half by the crash.
    let settled_c = line("settled", &c);
    let torn = &settled_c[..settled_c.len() / 2];
    let second = line("settled", &d) + "\n" + r#"{"t":"settled"}"# + "\n" + torn;
    std::fs::write(dir.journal().join(OLD_SEGMENTS[1]), second).unwrap();

    let sink = Arc::new(MemorySink::new());
    let (writer, task) = LedgerWriter::start(sink.clone(), journal_config(&dir)).unwrap();
    let found = writer.journal_recovery();
    assert_eq!(
        (found.segments, found.settled, found.recovered, found.voided, found.corrupt_lines),
        (2, 2, 1, 1, 2),
        "{found:?}"
    );
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    let mut recovered_c = intent_of(&c);
    recovered_c.usage_source = UsageSource::Recovered;
    // In log order: a and c were first seen in the first segment, d in the second.
    assert_eq!(sink.entries(), [a, recovered_c, d]);
    let aside = std::fs::read_to_string(dir.journal().join("ledger.corrupt")).unwrap();
    assert_eq!(aside, format!("{{\"t\":\"settled\"}}\n{torn}\n"), "the damaged bytes are kept for inspection");
    // Clean stop: the old segments' entries are at the sink, so the segments are gone.
    let left = segments(&dir);
    assert!(!left.iter().any(|n| n == OLD_SEGMENTS[0] || n == OLD_SEGMENTS[1]), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_deletes_done_segments_and_keeps_one_with_an_open_intent_or_entries_not_yet_durable() {
    let dir = TempDir::new("rotation");
    let sink = Arc::new(MemorySink::new());
    // Entries wait in memory for an hour unless flushed: not durable.
    let cfg = LedgerConfig { max_delay: Duration::from_secs(3600), ..journal_config(&dir) };
    let (writer, task) = LedgerWriter::start(sink.clone(), cfg).unwrap();
    let mut seq = 0;
    // Records until `n` segments newer than `than` were created (a segment file appears
    // just before it becomes current, so one more is needed to know it was written to).
    let mut traffic_until = async |n: u64, than: u64| {
        crate::support::eventually("rotations", || {
            writer.record(entry(0, seq)).unwrap();
            seq += 1;
            newest_seq(&dir) >= than + n
        })
        .await;
    };
    let first = segments(&dir)[0].clone();
    let first_seq = newest_seq(&dir);

    // Traffic across rotations, none of it durable yet: every segment stays.
    traffic_until(3, first_seq).await;
    assert_eq!(segments(&dir)[0], first, "no segment goes while its entries are only in memory");
    // Durable now: the sealed segments go (the current one, and one being created, stay).
    writer.flush().await.unwrap();
    crate::support::eventually("done segments are deleted", || segments(&dir).len() <= 2).await;

    // A long stream's intent keeps its segment, and (oldest first) every later one.
    let long_stream = writer.intent(&intent_of(&entry(9, 0)));
    let held = segments(&dir).last().cloned().unwrap();
    traffic_until(3, newest_seq(&dir)).await;
    writer.flush().await.unwrap();
    traffic_until(2, newest_seq(&dir)).await;
    let now = segments(&dir);
    assert!(now.len() >= 5, "{now:?}");
    assert!(now[0] <= held, "the open intent's segment stays: {now:?}");

    // The stream ends: its segment and every done one after it go.
    writer.settle(long_stream, entry(9, 0)).unwrap();
    writer.flush().await.unwrap();
    crate::support::eventually("the done segments are deleted", || {
        let now = segments(&dir);
        now.len() <= 2 && now[0] > held
    })
    .await;
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    assert_eq!(sink.len(), seq + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_the_same_log_is_refused_and_files_are_private() {
    let dir = TempDir::new("lock");
    let sink = Arc::new(MemorySink::new());
    let (writer, task) = LedgerWriter::start(sink.clone(), journal_config(&dir)).unwrap();
    let other_spool = LedgerConfig { spool_path: dir.path().join("other.spool"), ..journal_config(&dir) };
    let err = LedgerWriter::start(sink.clone(), other_spool).unwrap_err();
    assert!(matches!(err, tollgate_metering::LedgerError::JournalLocked { .. }), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.journal()), 0o700);
        for name in segments(&dir) {
            assert_eq!(mode(&dir.journal().join(name)), 0o600);
        }
    }
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    drop(writer);
    // Once stopped and dropped, the directory is free again.
    let (writer, task) = LedgerWriter::start(sink, journal_config(&dir)).unwrap();
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_settled_with_another_requests_entry_is_voided_not_recovered() {
    let dir = TempDir::new("mismatch");
    let sink = Arc::new(MemorySink::new());
    let (writer, task) = LedgerWriter::start(sink.clone(), journal_config(&dir)).unwrap();
    let intent = writer.intent(&intent_of(&entry(0, 0)));
    writer.settle(intent, entry(0, 1)).unwrap();
    // A writer without a log hands out intents that do nothing.
    let plain_dir = TempDir::new("no-log");
    let (plain, plain_task) = LedgerWriter::start(Arc::new(MemorySink::new()), config(&plain_dir)).unwrap();
    assert!(!plain.intent(&entry(0, 2)).is_logged());
    plain.shutdown().await.unwrap();
    plain_task.await.unwrap();
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    drop(writer);

    let (writer, task) = LedgerWriter::start(sink.clone(), journal_config(&dir)).unwrap();
    assert_eq!(writer.recovered(), 0);
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    assert_eq!(sink.entries(), [entry(0, 1)]);
}

#[test]
fn an_intent_can_cross_threads_and_outlive_its_borrow() {
    fn check<T: Send + Sync + 'static>() {}
    check::<tollgate_metering::Intent>();
    check::<LedgerWriter>();
}

/// Set (with [`CHILD_ENV`]) for the child of the load test.
const LOAD_ENV: &str = "TOLLGATE_LEDGER_CRASH_LOAD";

/// A sink that survives the process: one `write(2)` of JSON lines per batch, so what it
/// acknowledged before a SIGKILL is still there. Slow (20 ms a write), so many entries
/// are only in the writer's memory when the kill comes, while segments rotate.
struct FileSink(std::path::PathBuf);

impl LedgerSink for FileSink {
    fn write_batch<'a>(&'a self, entries: &'a [LedgerEntry]) -> SinkFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut buf = Vec::new();
            for e in entries {
                serde_json::to_writer(&mut buf, e).unwrap();
                buf.push(b'\n');
            }
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.0).unwrap();
            f.write_all(&buf).unwrap();
            Ok(())
        })
    }
}

fn file_sink_entries(path: &std::path::Path) -> Vec<LedgerEntry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Only whole lines: the last may have been cut by the kill.
    text.split_inclusive('\n').filter(|l| l.ends_with('\n')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every tenth request of the load never reaches an upstream (its intent is dropped).
fn is_void(seq: usize) -> bool {
    seq.is_multiple_of(10)
}

fn load_config(dir: &TempDir) -> LedgerConfig {
    // Small batches, a short delay and 5 ms segments: entries reach the sink and
    // segments are deleted all the time, so the kill lands in the middle of both.
    LedgerConfig {
        max_batch: 16,
        max_delay: Duration::from_millis(3),
        journal_dir: Some(dir.journal()),
        journal_rotate: Duration::from_millis(5),
        ..config(dir)
    }
}

/// The child of the load test: 8 producers run requests (intent, a pause, settle or
/// void) and say on stdout what returned, until killed.
async fn load_child(dir: std::path::PathBuf) {
    let dir = TempDir::at(dir);
    let sink = Arc::new(FileSink(dir.path().join("sink.jsonl")));
    let (writer, _task) = LedgerWriter::start(sink, load_config(&dir)).unwrap();
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let say = move |line: String| {
        let mut out = out.lock().unwrap();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let (writer, say) = (writer.clone(), say.clone());
            tokio::spawn(async move {
                for seq in 0.. {
                    let done = entry(p, seq);
                    let intent = writer.intent(&intent_of(&done));
                    say(format!("D {}", done.request_id));
                    tokio::time::sleep(Duration::from_micros(200 * (seq % 7) as u64)).await;
                    if is_void(seq) {
                        drop(intent);
                        say(format!("V {}", done.request_id));
                    } else {
                        writer.settle(intent, done.clone()).unwrap();
                        say(format!("S {}", done.request_id));
                    }
                }
            })
        })
        .collect();
    for p in producers {
        let _ = p.await;
    }
    std::mem::forget(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_of_a_load_loses_no_request_the_upstream_served() {
    for round in 0..3 {
        let dir = TempDir::new("kill9-load");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "journal::crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(LOAD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let kill_after = 100 + (nanos as usize % 400);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut said: Vec<String> = Vec::new();
            let mut settled = 0;
            let mut signalled = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("S ") {
                    settled += 1;
                }
                said.push(line);
                if settled >= kill_after && !signalled {
                    signalled = true;
                    let _ = tx.send(());
                }
            }
            said
        });
        let got_there = rx.recv_timeout(Duration::from_secs(60)).is_ok();
        child.kill().unwrap();
        child.wait().unwrap();
        let said = reader.join().unwrap();
        assert!(got_there, "round {round}: the load never got going");

        // The books: what the child's sink stored before the kill, plus the restart.
        let sink = Arc::new(MemorySink::new());
        let (writer, task) = LedgerWriter::start(sink.clone(), load_config(&dir)).unwrap();
        writer.shutdown().await.unwrap();
        task.await.unwrap();
        let before = file_sink_entries(&dir.path().join("sink.jsonl"));
        let after = sink.entries();
        let mut books: HashMap<String, Vec<LedgerEntry>> = HashMap::new();
        for e in before.iter().chain(&after) {
            books.entry(e.request_id.clone()).or_default().push(e.clone());
        }

        let (mut dispatched, mut settled, mut voided) = (HashSet::new(), HashSet::new(), HashSet::new());
        for line in &said {
            match line.split_once(' ') {
                Some(("D", id)) => dispatched.insert(id.to_owned()),
                Some(("S", id)) => settled.insert(id.to_owned()),
                Some(("V", id)) => voided.insert(id.to_owned()),
                _ => false,
            };
        }
        let parse = |id: &str| -> (usize, usize) {
            let (p, s) = id.split_once('-').unwrap();
            (p[1..].parse().unwrap(), s.parse().unwrap())
        };
        let mut recovered = 0;
        for id in &dispatched {
            let (p, seq) = parse(id);
            let versions = books.get(id.as_str()).cloned().unwrap_or_default();
            let mut want_recovered = intent_of(&entry(p, seq));
            want_recovered.usage_source = UsageSource::Recovered;
            if voided.contains(id) {
                assert!(versions.is_empty(), "round {round}: voided {id} was charged: {versions:?}");
                continue;
            }
            // Killed before its intent was dropped, it is in flight as far as anyone knows
            // (or its void line made it and the child could not say so).
            if !(is_void(seq) && versions.is_empty()) {
                assert!(!versions.is_empty(), "round {round}: dispatched {id} has no entry");
            }
            if settled.contains(id) {
                // A real sink keeps the first it got; every version must be the settled one.
                assert!(versions.iter().all(|e| *e == entry(p, seq)), "round {round}: settled {id}: {versions:?}");
            } else {
                assert!(
                    versions.iter().all(|e| *e == entry(p, seq) || *e == want_recovered),
                    "round {round}: in flight {id}: {versions:?}"
                );
                recovered += usize::from(versions.contains(&want_recovered));
            }
        }
        // An intent the kill cut off before the child could say so: only the request after
        // its producer's last, and only as recovered.
        let mut last: HashMap<usize, usize> = HashMap::new();
        for id in &dispatched {
            let (p, seq) = parse(id);
            let l = last.entry(p).or_default();
            *l = (*l).max(seq);
        }
        for (id, versions) in books.iter().filter(|(id, _)| !dispatched.contains(id.as_str())) {
            let (p, seq) = parse(id);
            assert_eq!(Some(seq), last.get(&p).map(|l| l + 1), "round {round}: {id} was never dispatched");
            assert!(versions.iter().all(|e| e.usage_source == UsageSource::Recovered), "{versions:?}");
            recovered += 1;
        }
        assert_eq!(writer.recovered() as usize, recovered, "round {round}");
        eprintln!(
            "round {round}: {} dispatched, {} settled, {} recovered, {} at the sink before the kill",
            dispatched.len(),
            settled.len(),
            recovered,
            before.len()
        );
    }
}
