-- 006: full-text search over the log (SearchLogs): log_entries.search, a generated tsvector, and a GIN index.
--
-- summary: adds log_entries.search, a stored generated tsvector of the message (its first 256 Ki
-- summary: characters), language-neutral ('simple': words lower-cased, no stemming, no stop words), and
-- summary: the GIN index idx_logs_search on it.
-- locks: ACCESS EXCLUSIVE on log_entries while every partition is rewritten with the new column (ingest
-- locks: commits and log reads wait; the registry and dead letters do not), then the GIN index is built
-- locks: in the same transaction. Measured at 1,000,000 rows: see bench/README.md, "Upgrading" (006).
--
-- Scope: the message only, not the context. The message is the event's text as normalization reads it
-- (a text's content, an event's type, a tool's name, a failed tool's error, a LogEntry's message,
-- telemetry's text); the context is the whole event again as JSON, ids and hashes included. Indexing
-- the context's string values too (jsonb_to_tsvector) made ingest 2.5 times slower in a same-run A/B
-- (about 29 words a row into the GIN index instead of a few, and 480 more bytes a row): see
-- bench/README.md, issue 15. The issue's rule: keep ingest at 0.8x or better, narrowing the scope first.
--
-- Why generated and stored rather than an expression index: the vector is computed once, on insert, by
-- PostgreSQL itself (every writer: COPY, INSERT, an older replica during a rolling upgrade, an operator),
-- and a query reads it instead of parsing the text again (ranking, and the recheck GIN needs for
-- phrases). The cost is the rewrite above.
--
-- Partitions: the column and the index are declared on the partitioned parent, so ALTER TABLE and
-- CREATE INDEX reach every partition (log_entries_legacy, log_entries_default and the daily ones), and
-- a partition created later by src/store/partitions.ts (CREATE TABLE … LIKE log_entries INCLUDING ALL,
-- then ATTACH) gets the same generated column and has the index built on attach.
--
-- The message is bounded (left(…, 262144)) so that one huge message cannot exceed PostgreSQL's 1 MB
-- tsvector limit (which would make its row fail to insert).
--
-- Safe to run again: a log_entries that already has the column is left alone.
DO $migration$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'log_entries'::regclass AND attname = 'search' AND NOT attisdropped) THEN
    LOCK TABLE log_entries IN ACCESS EXCLUSIVE MODE;
    ALTER TABLE log_entries ADD COLUMN search tsvector
      GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, left(coalesce(message, ''), 262144))) STORED;
  END IF;
END
$migration$;
CREATE INDEX IF NOT EXISTS idx_logs_search ON log_entries USING gin (search);
