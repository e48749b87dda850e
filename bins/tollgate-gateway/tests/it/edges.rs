//! Bounded edges: on every listener (data plane, management REST, gRPC) a connection that
//! stalls in any phase is closed within its deadline, connections above a listener's cap
//! are refused at once, and a gRPC Watch stream lives on past the idle timeout.

use crate::standalone::{ADMIN, Gateway};
use futures_util::future::join_all;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_testkit::FakeUpstream;
use tollgate_testkit::http_client::get;
use tollgate_testkit::process::eventually;

/// Low deadlines so the tests are quick: heads (and the HTTP/2 handshake) 2 s, bodies 3 s,
/// idle 3 s, keep-alive pings every second.
const QUICK: [(&str, &str); 5] = [
    ("TOLLGATE_HEADER_TIMEOUT_S", "2"),
    ("TOLLGATE_BODY_TIMEOUT_S", "3"),
    ("TOLLGATE_IDLE_TIMEOUT_S", "3"),
    ("TOLLGATE_KEEPALIVE_INTERVAL_S", "1"),
    ("TOLLGATE_KEEPALIVE_TIMEOUT_S", "1"),
];
const HEADER: Duration = Duration::from_secs(2);
const BODY: Duration = Duration::from_secs(3);
/// What a deadline may be overshot by on a loaded test machine.
const SLACK: Duration = Duration::from_secs(4);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what a client sends right after the preface.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// How a hostile client stalls.
#[derive(Debug, Clone, Copy)]
enum Stall {
    /// Connects and sends nothing.
    Silent,
    /// Part of the HTTP/2 preface.
    PartialPreface,
    /// The whole HTTP/2 preface and SETTINGS, then nothing.
    FullPreface,
    /// Part of an HTTP/1.1 head.
    PartialHead,
    /// A complete head announcing 1,000 body bytes that never come.
    NoBody,
    /// A complete head, then the body at one byte a second.
    Trickle,
}

impl Stall {
    const ALL: [Stall; 6] =
        [Stall::Silent, Stall::PartialPreface, Stall::FullPreface, Stall::PartialHead, Stall::NoBody, Stall::Trickle];

    /// The deadline that must close it.
    fn deadline(self) -> Duration {
        match self {
            Stall::NoBody | Stall::Trickle => BODY,
            _ => HEADER,
        }
    }
}

/// Reads (and drops) whatever comes until the peer closes; `Err` when it is still open
/// after `within`.
async fn closed_within(sock: &mut tokio::net::tcp::OwnedReadHalf, within: Duration) -> Result<(), ()> {
    let mut buf = vec![0u8; 16 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| ())
}

/// Stalls on `addr` as `stall` says, with a request to `path` authorized by `auth`;
/// `None` when the gateway closed the connection within the deadline plus slack, else
/// what stayed open.
async fn stall_on(addr: &str, path: &str, auth: &str, stall: Stall) -> Option<String> {
    let sock = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {auth}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    );
    let sent: Vec<u8> = match stall {
        Stall::Silent => Vec::new(),
        Stall::PartialPreface => H2_PREFACE[..16].to_vec(),
        Stall::FullPreface => [H2_PREFACE, H2_SETTINGS].concat(),
        Stall::PartialHead => format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\n").into_bytes(),
        Stall::NoBody | Stall::Trickle => head.into_bytes(),
    };
    let _ = wr.write_all(&sent).await;
    let trickle = tokio::spawn(async move {
        if matches!(stall, Stall::Trickle) {
            while wr.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        } else {
            // Hold the write half open (dropping it would send FIN).
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(wr);
        }
    });
    let closed = closed_within(&mut rd, stall.deadline() + SLACK).await;
    trickle.abort();
    closed.err().map(|()| format!("{addr} {path}: {stall:?} still open after {:?}", stall.deadline() + SLACK))
}

#[tokio::test]
async fn every_listener_closes_connections_that_stall_in_any_phase() {
    let gw = Gateway::start_with_env(&QUICK).await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let listeners = [
        (gw.data.trim_start_matches("http://"), "/v1/chat/completions", secret.as_str()),
        (gw.admin.trim_start_matches("http://"), "/api/v1/teams", ADMIN),
        (gw.grpc.trim_start_matches("http://"), "/tollgate.v1.AdminService/ListTeams", ADMIN),
    ];
    let cases = listeners
        .iter()
        .flat_map(|&(addr, path, auth)| Stall::ALL.into_iter().map(move |stall| stall_on(addr, path, auth, stall)));
    let open: Vec<String> = join_all(cases).await.into_iter().flatten().collect();
    assert!(open.is_empty(), "connections left open:\n{}", open.join("\n"));
    // The gateway still serves.
    assert_eq!(get(&format!("{}/healthz", gw.data), None).await.status, http::StatusCode::OK);
}

type Halves = (tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf);

/// Opens `n` silent connections to `addr` and sorts them into those closed at once and
/// those still open a moment later (both halves kept: a FIN would end them early).
async fn flood(addr: &str, n: usize) -> (usize, Vec<Halves>) {
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        socks.push(TcpStream::connect(addr).await.unwrap().into_split());
    }
    let checks = socks.into_iter().map(|(mut rd, wr)| async move {
        let refused = closed_within(&mut rd, Duration::from_millis(1500)).await.is_ok();
        (refused, (rd, wr))
    });
    let mut refused = 0;
    let mut open = Vec::new();
    for (was_refused, halves) in join_all(checks).await {
        if was_refused {
            refused += 1;
        } else {
            open.push(halves);
        }
    }
    (refused, open)
}

#[tokio::test]
async fn connections_above_a_listeners_cap_are_refused_at_once_and_the_rest_closed_at_the_deadline() {
    let env = [
        ("TOLLGATE_HEADER_TIMEOUT_S", "5"),
        ("TOLLGATE_MAX_CONNECTIONS", "20"),
        ("TOLLGATE_ADMIN_MAX_CONNECTIONS", "10"),
        ("TOLLGATE_GRPC_MAX_CONNECTIONS", "10"),
    ];
    let gw = Gateway::start_with_env(&env).await;
    for (addr, cap) in [(&gw.data, 20), (&gw.admin, 10), (&gw.grpc, 10)] {
        let addr = addr.trim_start_matches("http://");
        let (refused, open) = flood(addr, cap + 30).await;
        // The test client's own pooled connections may hold a permit or two.
        assert!(refused >= 30, "{addr}: {refused} of {} connections refused at once (cap {cap})", cap + 30);
        assert!(open.len() <= cap, "{addr}: {} connections held open above the cap of {cap}", open.len());
        let held = open
            .into_iter()
            .map(|(mut rd, _wr)| async move { closed_within(&mut rd, Duration::from_secs(5) + SLACK).await.is_ok() });
        let closed = join_all(held).await;
        assert!(closed.iter().all(|c| *c), "{addr}: connections under the cap outlived the header deadline");
    }
    // Permits came back: each listener serves again.
    for base in [&gw.data, &gw.admin] {
        let url = format!("{base}/healthz");
        eventually(Duration::from_secs(5), "the listener serves again", || async {
            get(&url, None).await.status == http::StatusCode::OK
        })
        .await;
    }
}

#[tokio::test]
async fn a_watch_stream_lives_on_past_the_idle_timeout() {
    use tollgate_proto::v1::WatchRequest;
    use tollgate_proto::v1::config_service_client::ConfigServiceClient;
    let gw = Gateway::start_with_env(&QUICK).await;
    let mut client = ConfigServiceClient::connect(gw.grpc.clone()).await.unwrap().max_decoding_message_size(1 << 30);
    let mut req = tonic::Request::new(WatchRequest { since_revision: 0, accept_changes: true });
    req.metadata_mut().insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    let mut stream = client.watch(req).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().expect("the first snapshot");
    // Quiet for well past the header and idle timeouts: only keep-alive pings pass.
    tokio::time::sleep(HEADER + BODY + SLACK).await;
    gw.created("/api/v1/teams", json!({"name": "after-the-quiet"})).await;
    let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a change arrives on the same stream")
        .expect("the stream is still open")
        .expect("a message, not the end of the stream");
    assert!(next.revision > first.revision);
}
