//! The writer end to end: what reaches the sink through outages, crashes and restarts.

use crate::support::{TempDir, assert_each_once_in_order, config, entry, eventually};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tollgate_metering::{LedgerConfig, LedgerError, LedgerWriter, MemorySink, Spool};

fn start(sink: &Arc<MemorySink>, config: LedgerConfig) -> (LedgerWriter, tokio::task::JoinHandle<()>) {
    LedgerWriter::start(sink.clone(), config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_outage_under_load_delivers_every_entry_once_in_producer_order() {
    const PRODUCERS: usize = 8;
    const PER_PRODUCER: usize = 625;
    const TOTAL: usize = PRODUCERS * PER_PRODUCER;
    let dir = TempDir::new("outage");
    let sink = Arc::new(MemorySink::new());
    let (writer, task) = start(&sink, config(&dir));

    let recorded = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (writer, recorded) = (writer.clone(), recorded.clone());
            tokio::spawn(async move {
                for seq in 0..PER_PRODUCER {
                    writer.record(entry(p, seq)).unwrap();
                    recorded.fetch_add(1, Ordering::Relaxed);
                    if seq % 5 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();

    // Kill the sink a third of the way in; bring it back once the outage has spooled
    // entries and two thirds are recorded.
    eventually("a third is recorded", || recorded.load(Ordering::Relaxed) >= TOTAL / 3).await;
    sink.set_failing(true);
    eventually("the outage spools entries", || writer.spool_depth() > 0).await;
    eventually("two thirds are recorded", || recorded.load(Ordering::Relaxed) >= 2 * TOTAL / 3).await;
    sink.set_failing(false);
    for p in producers {
        p.await.unwrap();
    }
    writer.flush().await.unwrap();
    eventually("everything reaches the sink", || writer.spool_depth() == 0 && sink.len() == TOTAL).await;

    assert_each_once_in_order(&sink, &[PER_PRODUCER; PRODUCERS]);
    // The sink never stored-and-failed, so nothing it acknowledged was ever sent again.
    assert_eq!(sink.duplicates(), 0);
    let stats = writer.stats();
    assert!(stats.sink_failures > 0 && stats.spooled > 0, "the outage was real: {stats:?}");
    assert_eq!((stats.recorded, stats.delivered, stats.queue_depth), (TOTAL as u64, TOTAL as u64, 0), "{stats:?}");
    assert_eq!(dir.spool_bytes(), 0, "a replayed spool is truncated");
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_aborted_while_sink_is_down_leaves_everything_to_the_next_writer() {
    let dir = TempDir::new("abort");
    let down = Arc::new(MemorySink::new());
    down.set_failing(true);
    let (writer, task) = start(&down, config(&dir));
    for seq in 0..600 {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.flush().await.unwrap();
    assert_eq!(writer.spool_depth(), 600, "flushed while the sink is down: all spooled");
    // Still in memory when the task dies: the drop guard must spool them.
    for seq in 600..1000 {
        writer.record(entry(0, seq)).unwrap();
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // A handle outliving its task writes through to the spool.
    writer.record(entry(0, 1000)).unwrap();
    assert_eq!(writer.spool_depth(), 1001);
    drop(writer);
    assert!(down.is_empty());

    let sink = Arc::new(MemorySink::new());
    let (writer, task) = start(&sink, config(&dir));
    assert_eq!(writer.recovery().pending, 1001);
    // New entries queue behind the leftovers, so the order holds across the restart.
    for seq in 1001..1100 {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.flush().await.unwrap();
    eventually("the leftovers are replayed", || writer.spool_depth() == 0 && sink.len() == 1100).await;
    assert_each_once_in_order(&sink, &[1100]);
    assert_eq!(sink.duplicates(), 0);
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replays_a_torn_and_corrupted_spool_minus_the_damage() {
    let dir = TempDir::new("torn");
    {
        let mut spool = Spool::open(dir.spool()).unwrap();
        spool.append(&(0..30).map(|seq| entry(0, seq)).collect::<Vec<_>>()).unwrap();
        spool.append(&(0..20).map(|seq| entry(1, seq)).collect::<Vec<_>>()).unwrap();
    }
    // One flipped bit in producer 1's first entry, then a crash halfway through a line.
    let mut bytes = std::fs::read(dir.spool()).unwrap();
    let line_starts: Vec<usize> =
        std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
    bytes[line_starts[30] + 50] ^= 0x04;
    let torn = b"0badc0de\te\t{\"request_id\":\"p02-000000\",\"at\":";
    bytes.extend_from_slice(torn);
    std::fs::write(dir.spool(), &bytes).unwrap();

    let sink = Arc::new(MemorySink::new());
    let (writer, task) = start(&sink, config(&dir));
    let recovery = writer.recovery();
    assert_eq!((recovery.pending, recovery.corrupt_lines, recovery.torn_bytes), (49, 1, torn.len() as u64));
    assert_eq!(writer.stats().corrupt_lines, 1);
    eventually("the survivors are replayed", || writer.spool_depth() == 0 && sink.len() == 49).await;
    let ids: Vec<_> = sink.entries().into_iter().map(|e| e.request_id).collect();
    let want: Vec<_> = (0..30).map(|s| entry(0, s)).chain((1..20).map(|s| entry(1, s))).map(|e| e.request_id).collect();
    assert_eq!(ids, want);
    let aside = std::fs::read(dir.side_file("corrupt")).unwrap();
    assert!(aside.ends_with(&[&torn[..], b"\n"].concat()), "the damaged bytes are kept for inspection");
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_interrupted_by_new_outages_loses_nothing_and_the_spool_does_not_grow() {
    const TOTAL: usize = 2000;
    let dir = TempDir::new("interrupted");
    let sink = Arc::new(MemorySink::new());
    sink.set_failing(true);
    let (writer, task) = start(&sink, config(&dir));
    for seq in 0..TOTAL {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.flush().await.unwrap();
    assert_eq!(writer.spool_depth(), TOTAL as u64);
    let full = dir.spool_bytes();

    // Three times: the sink comes back for a few batches (64 entries each), then fails
    // in the middle of the replay.
    let mut delivered = 0;
    for batches in [5, 3, 7] {
        sink.fail_after(batches);
        delivered += batches as usize * 64;
        let left = (TOTAL - delivered) as u64;
        eventually("the partial replay is acknowledged", || writer.spool_depth() == left).await;
        let calls = sink.write_calls();
        eventually("the sink fails again and is retried", || sink.write_calls() >= calls + 2).await;
        assert_eq!(sink.len(), delivered);
        assert_eq!(writer.spool_depth(), left, "a failed replay consumes nothing");
        // Only acknowledgement lines are added: a failed replay batch is not spooled again.
        assert!(dir.spool_bytes() <= full + 1024, "spool grew from {full} to {} bytes", dir.spool_bytes());
    }

    sink.set_failing(false);
    eventually("the rest is replayed", || writer.spool_depth() == 0 && sink.len() == TOTAL).await;
    assert_each_once_in_order(&sink, &[TOTAL]);
    assert_eq!(sink.duplicates(), 0);
    assert_eq!(dir.spool_bytes(), 0);
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acknowledgements_are_resent_and_stored_once() {
    let dir = TempDir::new("lost-acks");
    let sink = Arc::new(MemorySink::new());
    sink.set_lose_acks(true);
    let (writer, task) = start(&sink, config(&dir));
    for seq in 0..300 {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.flush().await.unwrap();
    eventually("the sink sees re-sent entries", || sink.duplicates() >= 64).await;
    sink.set_lose_acks(false);
    eventually("everything is acknowledged", || writer.spool_depth() == 0 && writer.queue_depth() == 0).await;
    writer.flush().await.unwrap();
    assert_each_once_in_order(&sink, &[300]);
    assert_eq!(sink.received(), 300 + sink.duplicates());
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_sink_times_out_into_the_spool() {
    let dir = TempDir::new("hung");
    let sink = Arc::new(MemorySink::new());
    sink.set_delay(Duration::from_secs(3600));
    let (writer, task) = start(&sink, LedgerConfig { write_timeout: Duration::from_millis(50), ..config(&dir) });
    for seq in 0..10 {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.flush().await.unwrap();
    assert_eq!(writer.spool_depth(), 10);
    assert!(writer.stats().sink_failures >= 1);
    sink.set_delay(Duration::ZERO);
    eventually("the sink answers again", || writer.spool_depth() == 0 && sink.len() == 10).await;
    assert_each_once_in_order(&sink, &[10]);
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_entries_go_to_dead_letters_and_the_rest_flow_in_order() {
    let dir = TempDir::new("rejected");
    let sink = Arc::new(MemorySink::new());
    sink.reject(entry(0, 4).request_id);
    sink.reject(entry(0, 14).request_id);
    let (writer, task) = start(&sink, config(&dir));
    // Straight to the sink...
    for seq in 0..10 {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.flush().await.unwrap();
    // ...and through the spool.
    sink.set_failing(true);
    for seq in 10..20 {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.flush().await.unwrap();
    assert_eq!(writer.spool_depth(), 10);
    sink.set_failing(false);
    eventually("the spool drains", || writer.spool_depth() == 0 && sink.len() == 18).await;

    let ids = |es: Vec<tollgate_metering::LedgerEntry>| es.into_iter().map(|e| e.request_id).collect::<Vec<_>>();
    let want: Vec<_> = (0..20).filter(|s| *s != 4 && *s != 14).map(|s| entry(0, s).request_id).collect();
    assert_eq!(ids(sink.entries()), want);
    let dead = Spool::read_entries(dir.side_file("rejected")).unwrap();
    assert_eq!(dead, [entry(0, 4), entry(0, 14)]);
    assert_eq!(writer.stats().rejected, 2);
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_to_the_sink_and_late_entries_wait_in_the_spool() {
    let dir = TempDir::new("shutdown");
    let sink = Arc::new(MemorySink::new());
    let (writer, task) = start(&sink, LedgerConfig { max_delay: Duration::from_secs(3600), ..config(&dir) });
    for seq in 0..100 {
        writer.record(entry(0, seq)).unwrap();
    }
    // max_delay is an hour: only shutdown can have pushed the partial batch out.
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    assert_eq!(sink.len(), 100);
    writer.record(entry(0, 100)).unwrap();
    assert_eq!(writer.spool_depth(), 1);
    assert!(matches!(LedgerWriter::start(sink.clone(), config(&dir)), Err(LedgerError::SpoolLocked { .. })));
    drop(writer);

    let (writer, task) = start(&sink, config(&dir));
    eventually("the late entry is replayed", || sink.len() == 101).await;
    assert_each_once_in_order(&sink, &[101]);
    drop(writer);
    // Dropping the last handle stops the task.
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_the_sink_is_down_keeps_everything_for_the_next_start() {
    let dir = TempDir::new("shutdown-down");
    let sink = Arc::new(MemorySink::new());
    sink.set_failing(true);
    let (writer, task) = start(&sink, config(&dir));
    for seq in 0..500 {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    drop(writer);

    sink.set_failing(false);
    let (writer, task) = start(&sink, config(&dir));
    assert_eq!(writer.recovery().pending, 500);
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    // Shutdown replays a spool the sink takes.
    assert_each_once_in_order(&sink, &[500]);
    assert_eq!(dir.spool_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_garbage_from_another_program_is_not_replayed() {
    let dir = TempDir::new("garbage");
    std::fs::create_dir_all(dir.spool().parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(dir.spool()).unwrap();
    f.write_all(b"not a spool\n\0\0\0\0\0\0").unwrap();
    drop(f);
    let sink = Arc::new(MemorySink::new());
    let (writer, task) = start(&sink, config(&dir));
    assert_eq!(writer.recovery().corrupt_lines, 1);
    writer.record(entry(0, 0)).unwrap();
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    assert_each_once_in_order(&sink, &[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_max_queue_spills_to_the_spool_and_keeps_its_order() {
    let dir = TempDir::new("backlog");
    let sink = Arc::new(MemorySink::new());
    // Up, but far slower than the traffic.
    sink.set_delay(Duration::from_millis(30));
    let (writer, task) = start(&sink, LedgerConfig { max_queue: 100, ..config(&dir) });
    for seq in 0..3000 {
        writer.record(entry(0, seq)).unwrap();
        if seq % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    writer.flush().await.unwrap();
    let stats = writer.stats();
    assert!(stats.spooled > 0, "the backlog went to disk: {stats:?}");
    assert_eq!(stats.sink_failures, 0, "{stats:?}");
    sink.set_delay(Duration::ZERO);
    eventually("the backlog drains", || writer.spool_depth() == 0 && sink.len() == 3000).await;
    assert_each_once_in_order(&sink, &[3000]);
    assert_eq!(sink.duplicates(), 0);
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}
