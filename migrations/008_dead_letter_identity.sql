-- 008: a JetStream message is stored as a dead letter once, however often it is delivered.
--
-- summary: removes the copies of one message earlier versions stored in ingest_rejects (same stream_seq,
-- summary: subject, headers and payload: the first stays, marked replayed if a copy was), adds
-- summary: ingest_rejects.stream_name and stream_created_at (which stream, and which incarnation of it,
-- summary: the sequence belongs to) and the unique index ingest_rejects_message on them and stream_seq.
-- locks: ROW EXCLUSIVE on ingest_rejects while copies are found (two scans of its rows; payloads are
-- locks: read only where sequence, subject and size match) and deleted; then ACCESS EXCLUSIVE on it for
-- locks: the rest of the file, which adds two columns (no rewrite) and builds the index with no entries
-- locks: (one scan of its rows): ingest commits that write dead letters wait, dead-letter reads too;
-- locks: log_entries and the registry are not touched. Measured: see bench/README.md, "Upgrading" (008).
--
-- Why: a message is acked after its batch commits. A crash between COMMIT and the ack, an ACK_WAIT that
-- ran out on a slow host, or two replicas handed the same message, and JetStream delivers it again: its
-- row meets itself (ON CONFLICT on the row's id), but its dead letter was stored a second time, and
-- listings, metrics and the API counted it twice.
--
-- The identity: the JetStream message, (stream_name, stream_created_at, stream_seq), the same stream
-- position row ids are derived from (src/domain/identity.ts). A sequence alone is not enough: a stream
-- deleted and created again numbers from 1, and its messages are other messages even with the same bytes.
-- Only JetStream rows are keyed (stream_name <> ''): core NATS does not redeliver, and its "stream" is
-- the process (its start time and arrival count). The writer inserts with ON CONFLICT DO NOTHING and
-- counts only what went in.
--
-- Rows stored before this file (and by an older replica still running during a rolling upgrade) have
-- stream_created_at NULL and are not keyed. Their copies are found by what a copy shares: sequence,
-- subject, headers and payload. Two such rows could also be two messages with the same bytes at the same
-- sequence of two incarnations of a stream (or of two core processes); replay makes those one row anyway
-- (a replayed message's row id is its own id, timestamp and bytes, or its original sequence and bytes).
--
-- Safe to run again: the columns and the index are added only if missing, and only rows without
-- stream_created_at are compared.
-- A very large ingest_rejects: to keep the ACCESS EXCLUSIVE lock to a moment, add the columns and build
-- the index beforehand without blocking writes, and this file reuses them:
--   ALTER TABLE ingest_rejects ADD COLUMN stream_name text NOT NULL DEFAULT '', ADD COLUMN stream_created_at timestamptz;
--   CREATE UNIQUE INDEX CONCURRENTLY ingest_rejects_message ON ingest_rejects (stream_created_at, stream_seq, stream_name)
--     WHERE stream_name <> '';
DO $migration$
DECLARE
  -- Before the columns exist, every row was stored without them.
  legacy text := CASE WHEN EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'ingest_rejects'::regclass
                                     AND attname = 'stream_created_at' AND NOT attisdropped)
                      THEN 'AND d.stream_created_at IS NULL AND k.stream_created_at IS NULL' ELSE '' END;
BEGIN
  -- Each copy (d) and the first row it copies (k). The payload is compared as a filter, not a join key
  -- (IS TRUE): a hash or merge join on it would read every payload (up to MAX_EVENT_BYTES each); its
  -- size (octet_length reads no payload) narrows the pairs first.
  EXECUTE format($sql$
    WITH copies AS (
      SELECT d.id AS copy_id, min(k.id) AS first_id
      FROM ingest_rejects d
      JOIN ingest_rejects k
        ON k.stream_seq = d.stream_seq AND k.subject = d.subject AND octet_length(k.payload) = octet_length(d.payload)
       AND k.id < d.id AND (k.headers = d.headers AND k.payload = d.payload) IS TRUE
      WHERE d.stream_seq > 0 %s
      GROUP BY d.id
    ), gone AS (
      DELETE FROM ingest_rejects r USING copies c WHERE r.id = c.copy_id
      RETURNING c.first_id, r.replayed_at
    )
    UPDATE ingest_rejects f SET replayed_at = g.at
    FROM (SELECT first_id, min(replayed_at) AS at FROM gone WHERE replayed_at IS NOT NULL GROUP BY first_id) g
    WHERE f.id = g.first_id AND f.replayed_at IS NULL
  $sql$, legacy);
END
$migration$;

ALTER TABLE ingest_rejects ADD COLUMN IF NOT EXISTS stream_name text NOT NULL DEFAULT '';
ALTER TABLE ingest_rejects ADD COLUMN IF NOT EXISTS stream_created_at timestamptz;
COMMENT ON COLUMN ingest_rejects.stream_name IS 'JetStream stream the message came from ('''' in core mode and before migration 008)';
COMMENT ON COLUMN ingest_rejects.stream_created_at IS 'When that stream was created (core mode: when the process started; NULL before migration 008)';
CREATE UNIQUE INDEX IF NOT EXISTS ingest_rejects_message ON ingest_rejects (stream_created_at, stream_seq, stream_name)
  WHERE stream_name <> '';
