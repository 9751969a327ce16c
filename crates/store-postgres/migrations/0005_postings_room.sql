-- Room on every page of `postings` for its rows' next versions. Each indexer pass rewrites the
-- bitmap of every term it touched in the newest chunk; with full pages nearly every rewrite
-- went to another page and added an entry to the primary key (7 % of updates stayed on their
-- page, "heap-only"), and the dead versions stayed behind in the index. With half of each page
-- left free, 92-95 % of the rewrites stay on their page, touch no index, and the page prunes
-- its own dead versions: PostgreSQL's CPU per ingested event fell to 72-93 % of what it was
-- (BENCHMARKS.md). A chunk's rows are no longer rewritten once the watermark passes it; the
-- room they leave behind is the price, paid for postings only (the log is append-only and
-- stays packed).
ALTER TABLE postings SET (fillfactor = 50);
