//! Tests of the writer task's pieces that need no server: the duplicate check's look-back
//! and how batches gather (`insert.rs`).

use super::*;

#[test]
fn the_lookup_reaches_back_to_the_day_before_the_earliest_start() {
    let now = 20_000 * DAY_NS + 3_600_000_000_000;
    // Current spans (and spans claiming a later start): yesterday and today.
    assert_eq!(lookup_since(now, now), 19_999);
    assert_eq!(lookup_since(now + 5 * DAY_NS, now), 19_999);
    // A span that started five days ago: the day before its start's day.
    assert_eq!(lookup_since(now - 5 * DAY_NS, now), 19_994);
    // A start at the epoch: every day.
    assert_eq!(lookup_since(0, now), 0);
}

/// A request of `n` one-span traces, and the receiver its answer would go to.
fn request(
    n: u8,
) -> (
    WriteRequest,
    oneshot::Receiver<Result<WriteOutcome, StoreError>>,
) {
    let spans = (0..n)
        .map(|i| {
            let mut s = Span::new(TraceId([i + 1; 16]), SpanId([1; 8]), "op");
            s.service_name = "svc".into();
            s.start_time_unix_nano = 1_000;
            s.end_time_unix_nano = 2_000;
            s
        })
        .collect();
    let (tx, rx) = oneshot::channel();
    (WriteRequest::new(spans, tx), rx)
}

const LINGER: Duration = Duration::from_millis(30);

/// Gathers on a task of its own: the queue and the insert in flight go with it and come back.
fn spawn_gather(
    mut queue: mpsc::Receiver<WriteRequest>,
    mut inflight: Option<tokio::task::JoinHandle<bool>>,
) -> tokio::task::JoinHandle<(Option<Gathered>, mpsc::Receiver<WriteRequest>)> {
    tokio::spawn(async move {
        let gathered = gather(LINGER, 1_000, &mut queue, inflight.as_mut()).await;
        (gathered, queue)
    })
}

/// Lets the spawned tasks run until they wait (time is paused: it moves only when told).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn without_an_insert_in_flight_a_batch_gathers_for_the_linger_from_its_first_request() {
    let (tx, rx) = mpsc::channel(16);
    tx.send(request(2).0).await.unwrap();
    let task = spawn_gather(rx, None);
    tokio::time::advance(LINGER / 2).await;
    tx.send(request(3).0).await.unwrap();
    settle().await;
    assert!(!task.is_finished(), "returned before the linger passed");
    tokio::time::advance(LINGER).await;
    settle().await;
    assert!(task.is_finished(), "still gathering after the linger");
    // Sent after the linger: the next batch's.
    tx.send(request(4).0).await.unwrap();
    let (gathered, mut queue) = task.await.unwrap();
    let gathered = gathered.unwrap();
    let sizes: Vec<usize> = gathered.batch.iter().map(|r| r.spans.len()).collect();
    assert_eq!(sizes, [2, 3]);
    assert_eq!(gathered.finished, None);
    assert_eq!(queue.recv().await.unwrap().spans.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn while_an_insert_is_in_flight_a_batch_gathers_until_a_linger_after_it_ended() {
    for confirmed in [true, false] {
        let (tx, rx) = mpsc::channel(16);
        let (end_insert, insert_ends) = oneshot::channel::<bool>();
        let insert = tokio::spawn(async move { insert_ends.await.unwrap() });
        tx.send(request(1).0).await.unwrap();
        let task = spawn_gather(rx, Some(insert));
        // Long past the linger, the insert still runs: the batch keeps gathering.
        tokio::time::advance(LINGER * 10).await;
        tx.send(request(2).0).await.unwrap();
        settle().await;
        assert!(
            !task.is_finished(),
            "returned while the insert was in flight"
        );
        end_insert.send(confirmed).unwrap();
        settle().await;
        // Requests answered by the ended insert, sent again within the linger, join.
        tokio::time::advance(LINGER / 2).await;
        tx.send(request(3).0).await.unwrap();
        settle().await;
        assert!(
            !task.is_finished(),
            "returned before the linger after the insert"
        );
        tokio::time::advance(LINGER).await;
        let (gathered, _queue) = task.await.unwrap();
        let gathered = gathered.unwrap();
        let sizes: Vec<usize> = gathered.batch.iter().map(|r| r.spans.len()).collect();
        assert_eq!(sizes, [1, 2, 3]);
        assert_eq!(gathered.finished, Some(confirmed));
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_does_not_wait_for_the_insert_in_flight() {
    let (tx, rx) = mpsc::channel(16);
    let (_end_insert, insert_ends) = oneshot::channel::<bool>();
    let insert = tokio::spawn(async move { insert_ends.await.unwrap_or(false) });
    for _ in 0..5 {
        tx.send(request(250).0).await.unwrap();
    }
    let task = spawn_gather(rx, Some(insert));
    let (gathered, mut queue) = task.await.unwrap();
    let gathered = gathered.unwrap();
    // 1,000 spans at most, so four requests; the fifth waits for the next batch.
    assert_eq!(gathered.batch.len(), 4);
    assert_eq!(gathered.finished, None);
    assert_eq!(queue.recv().await.unwrap().spans.len(), 250);
}
