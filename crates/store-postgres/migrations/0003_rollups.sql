-- Derived data for statistics: per tenant, span (0 minute, 1 hour, 2 day, 3 week of occurred_at, UTC)
-- and period, the events' counts: in total, failed, and per actor, action and target (`keys`,
-- see sealtrail_store::rollup). While a chunk of the log is indexed it has rows of its own
-- for its minutes (`chunk` >= 0); once the watermark passes the chunk's end they are folded
-- into the minutes', hours', days' and weeks' summaries (`chunk` = -1), so a period is read as one
-- row and the newest chunk's few minutes.
CREATE TABLE rollups (
    tenant   text     NOT NULL,
    chunk    bigint   NOT NULL,
    span     smallint NOT NULL,
    period   bigint   NOT NULL,
    total    bigint   NOT NULL,
    failures bigint   NOT NULL,
    keys     bytea    NOT NULL,
    PRIMARY KEY (tenant, chunk, span, period)
);

-- Keys are read whole by every statistics query: stored out of line without compression, so a
-- read is a copy, not a decompression (the same trade as postings' bits).
ALTER TABLE rollups ALTER COLUMN keys SET STORAGE EXTERNAL;
