-- 006: full-text search over the log (SearchLogs): log_entries.search, a generated tsvector, and a GIN index.
--
-- summary: adds log_entries.search, a stored generated tsvector of the message (its first 256 Ki
-- summary: characters) and the context's string values, language-neutral ('simple': words lower-cased,
-- summary: no stemming, no stop words), and the GIN index idx_logs_search on it.
-- locks: ACCESS EXCLUSIVE on log_entries while every partition is rewritten with the new column (ingest
-- locks: commits and log reads wait; the registry and dead letters do not), then the GIN index is built
-- locks: in the same transaction. Measured at 1,000,000 rows: see bench/README.md, "Upgrading" (006).
--
-- Why generated and stored rather than an expression index: the vector is computed once, on insert, by
-- PostgreSQL itself (every writer: COPY, INSERT, an older replica during a rolling upgrade, an operator),
-- and a query reads it instead of parsing the text again (ranking, and the recheck GIN needs for
-- phrases). The cost is the rewrite above and about the text's size again on disk.
--
-- Partitions: the column and the index are declared on the partitioned parent, so ALTER TABLE and
-- CREATE INDEX reach every partition (log_entries_legacy, log_entries_default and the daily ones), and
-- a partition created later by src/store/partitions.ts (CREATE TABLE … LIKE log_entries INCLUDING ALL,
-- then ATTACH) gets the same generated column and has the index built on attach.
--
-- The message is bounded (left(…, 262144)) so that one huge message cannot exceed PostgreSQL's 1 MB
-- tsvector limit (which would make its row fail to insert); with MAX_EVENT_BYTES at its 1 MiB default
-- no context can reach that limit either.
--
-- Safe to run again: a log_entries that already has the column is left alone.
DO $migration$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'log_entries'::regclass AND attname = 'search' AND NOT attisdropped) THEN
    LOCK TABLE log_entries IN ACCESS EXCLUSIVE MODE;
    ALTER TABLE log_entries ADD COLUMN search tsvector GENERATED ALWAYS AS (
      to_tsvector('simple'::regconfig, left(coalesce(message, ''), 262144))
      || jsonb_to_tsvector('simple'::regconfig, coalesce(context, '{}'::jsonb), '["string"]'::jsonb)
    ) STORED;
  END IF;
END
$migration$;
CREATE INDEX IF NOT EXISTS idx_logs_search ON log_entries USING gin (search);
