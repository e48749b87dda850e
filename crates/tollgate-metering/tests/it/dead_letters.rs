//! Dead letters: entries the sink rejected stay visible and are offered to it again.

use crate::support::{TempDir, config, entry, eventually};
use std::sync::Arc;
use std::time::Duration;
use tollgate_metering::{LedgerConfig, LedgerWriter, MemorySink, rejected_entries};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_retried_until_the_sink_takes_them() {
    let dir = TempDir::new("dead-retry");
    let sink = Arc::new(MemorySink::new());
    let (bad, worse) = (entry(0, 3), entry(0, 5));
    sink.reject(bad.request_id.clone());
    sink.reject(worse.request_id.clone());
    let cfg = LedgerConfig { rejected_retry: Duration::from_millis(20), ..config(&dir) };
    let (writer, task) = LedgerWriter::start(sink.clone(), cfg).unwrap();
    for seq in 0..8 {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.flush().await.unwrap();
    assert_eq!(rejected_entries(&dir.spool()).unwrap(), [bad.clone(), worse.clone()]);
    assert_eq!(writer.stats().rejected_pending, 2);
    assert_eq!(sink.len(), 6);

    // Retried and rejected again: still there, still counted, and counted as rejected.
    eventually("a retry is rejected", || writer.stats().rejected >= 4).await;
    assert_eq!(writer.stats().rejected_pending, 2);

    // The sink is fixed for one of them: it leaves the file, the other stays.
    sink.stop_rejecting(&bad.request_id);
    eventually("the sink takes the fixed one", || sink.len() == 7).await;
    eventually("it leaves the file", || writer.stats().rejected_pending == 1).await;
    assert_eq!(rejected_entries(&dir.spool()).unwrap(), [worse]);
    assert!(sink.entries().contains(&bad));
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_offered_again_at_start() {
    let dir = TempDir::new("dead-start");
    let sink = Arc::new(MemorySink::new());
    sink.reject(entry(0, 1).request_id);
    let (writer, task) = LedgerWriter::start(sink.clone(), config(&dir)).unwrap();
    for seq in 0..3 {
        writer.record(entry(0, seq)).unwrap();
    }
    writer.shutdown().await.unwrap();
    task.await.unwrap();
    drop(writer);
    assert_eq!(rejected_entries(&dir.spool()).unwrap(), [entry(0, 1)]);

    sink.stop_rejecting(&entry(0, 1).request_id);
    // An hour between retries: only the one at start can deliver it.
    let cfg = LedgerConfig { rejected_retry: Duration::from_secs(3600), ..config(&dir) };
    let (writer, task) = LedgerWriter::start(sink.clone(), cfg).unwrap();
    assert_eq!(writer.stats().rejected_pending, 1);
    eventually("the dead letter is delivered", || sink.len() == 3 && writer.stats().rejected_pending == 0).await;
    assert!(rejected_entries(&dir.spool()).unwrap().is_empty());
    writer.shutdown().await.unwrap();
    task.await.unwrap();
}

#[test]
fn no_dead_letter_file_lists_nothing() {
    let dir = TempDir::new("dead-none");
    assert!(rejected_entries(&dir.spool()).unwrap().is_empty());
}
