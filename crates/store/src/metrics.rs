//! The name of every metric sealtrail exports, in one place (SPEC §12: names start with
//! `sealtrail_`, counters end in `_total`, durations are histograms in seconds). The store
//! records what its write path sees through the `metrics` facade; the server installs the
//! Prometheus recorder and serves `GET /metrics`.

/// Counter, by `tenant`: events stored by ingest.
pub const EVENTS_INGESTED: &str = "sealtrail_events_ingested_total";
/// Counter, by `tenant`: events sent again that were already stored (idempotent retries).
pub const EVENTS_DUPLICATE: &str = "sealtrail_events_duplicate_total";
/// Counter, by `tenant` (the credential's, `*` for a key of every tenant) and `reason`
/// (`invalid`, `forbidden`, `conflict`, `overloaded`, `unavailable`): events of ingest requests
/// that stored nothing. A body that cannot be read as events counts as one.
pub const EVENTS_FAILED: &str = "sealtrail_events_failed_total";
/// Gauge: events waiting in the write queue.
pub const QUEUE_DEPTH: &str = "sealtrail_queue_depth_events";
/// Gauge: the most events the write queue holds before ingest answers 503.
pub const QUEUE_CAPACITY: &str = "sealtrail_queue_capacity_events";
/// Histogram: events per group commit.
pub const BATCH_SIZE: &str = "sealtrail_batch_size_events";
/// Histogram: seconds from taking a group off the queue to its durable commit.
pub const COMMIT_DURATION: &str = "sealtrail_commit_duration_seconds";
/// Counter: group commits that failed (every request in them was answered with the error).
pub const COMMITS_FAILED: &str = "sealtrail_commits_failed_total";
/// Histogram, by `route` (the matched path pattern), `method` and `status`: HTTP request
/// duration in seconds.
pub const HTTP_DURATION: &str = "sealtrail_http_request_duration_seconds";
/// Gauge: events in the log not yet covered by derived data (indexes), over every tenant.
pub const INDEX_LAG: &str = "sealtrail_index_lag_events";
/// Counter, by `tenant`: log positions the indexer has covered with derived data (passes
/// behind ingest, settling, `sealtrail reindex`).
pub const INDEX_EVENTS: &str = "sealtrail_index_events_total";
/// Histogram, by `stage`: seconds each indexing pass spent in each of its stages, in order
/// `read` (opening the pass and reading its events from the log), `derive` (cutting them into
/// terms, words and counts), `merge` (adding those to the newest chunk's postings and rollups),
/// `write` (sending the update to the derived data) and `commit`. Divided by
/// [`INDEX_EVENTS`], each stage's sum is its cost per event: where the indexer's time goes.
pub const INDEX_STAGE_DURATION: &str = "sealtrail_index_stage_duration_seconds";
/// The stages of [`INDEX_STAGE_DURATION`], in the order a pass runs them.
pub const INDEX_STAGES: [&str; 5] = ["read", "derive", "merge", "write", "commit"];
/// Gauge, by `tenant`: seconds since the newest signed checkpoint was issued.
pub const CHECKPOINT_AGE: &str = "sealtrail_checkpoint_age_seconds";
/// Gauge, by `tenant`: the tree size the newest signed checkpoint covers.
pub const CHECKPOINT_SIZE: &str = "sealtrail_checkpoint_size_events";

/// Bucket bounds of the batch-size histogram (events).
pub const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];
/// Bucket bounds of the duration histograms (seconds).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
