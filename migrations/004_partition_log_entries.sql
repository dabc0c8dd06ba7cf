-- 004: log_entries becomes a table partitioned by range on the event time (DESIGN 5).
--
-- summary: converts log_entries into a table partitioned by event time: the existing rows stay, whole,
-- summary: as one partition (log_entries_legacy, up to the next UTC midnight); a DEFAULT partition takes
-- summary: event times no other partition covers; daily partitions follow (created by migrate/the service).
-- locks: ACCESS EXCLUSIVE on log_entries for the whole file: ingest commits and log reads wait, the
-- locks: registry and dead letters do not. An empty table is swapped at once; a table with rows needs
-- locks: two index builds and one scan of it (measured 1,000,000 rows: see bench/README.md, "Upgrading").
--
-- What it does, in this one transaction:
--  1. log_entries (a plain table) is renamed log_entries_legacy; its key and indexes take legacy names.
--  2. The partitioned log_entries is created with the same columns, a primary key of (id, timestamp)
--     (a unique key of a partitioned table must contain the partition key; the id is a UUIDv7 whose
--     prefix is the event time, so an event's id and timestamp always travel together), the same
--     indexes (declared once, built per partition) and the DEFAULT partition log_entries_default.
--     The seq sequence moves to the new table, so dropping the legacy partition later keeps it.
--  3. An empty old table is dropped. Otherwise rows at or after the cutover (the next UTC midnight;
--     clock-skewed events) move to the default partition, the old table gets the key (id, timestamp)
--     and an index on seq, loses the indexes the new schema does not have (its id-only key, the unique
--     seq index, the directive's idx_logs_time and idx_logs_source, all covered by the new ones), and
--     is attached whole as the partition [MINVALUE, cutover). Rows keep their id, seq and every column:
--     StreamLogs cursors and QueryLogs page tokens taken before stay valid.
-- The regular partitions (from the cutover on) are created by src/store/partitions.ts, run by `migrate`
-- and by the service right after this file; retention later drops the legacy partition whole once all
-- of it is older than LOG_RETENTION, and meanwhile deletes its expired rows in batches.
--
-- Safe to rerun: a log_entries that is already partitioned is left alone.
-- A very large table: build the two indexes beforehand without blocking writes, and this file reuses
-- them (then the lock lasts one scan of the table plus catalog work):
--   CREATE UNIQUE INDEX CONCURRENTLY log_entries_legacy_pkey ON log_entries (id, "timestamp");
--   CREATE INDEX CONCURRENTLY log_entries_legacy_seq_idx ON log_entries (seq);
DO $migration$
DECLARE
  cutover timestamptz := (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC';
  old_key text;
  idx record;
  cols text := 'id, trace_id, "timestamp", level, source, intent, message, context, created_at, seq, team_id, subject, received_at';
BEGIN
  IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('log_entries')) = 'p' THEN
    RETURN;
  END IF;
  LOCK TABLE log_entries IN ACCESS EXCLUSIVE MODE;

  -- 1. The old table and everything named after the new table's parts make way.
  ALTER TABLE log_entries RENAME TO log_entries_legacy;
  SELECT conname INTO old_key FROM pg_constraint
   WHERE conrelid = 'log_entries_legacy'::regclass AND contype = 'p';
  IF old_key IS NOT NULL AND old_key <> 'log_entries_legacy_pkey' THEN
    EXECUTE format('ALTER TABLE log_entries_legacy RENAME CONSTRAINT %I TO log_entries_legacy_id_key', old_key);
    old_key := 'log_entries_legacy_id_key';
  END IF;
  FOR idx IN
    SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = 'log_entries_legacy'::regclass
       AND c.relname IN ('idx_logs_time_seq', 'idx_logs_source_seq', 'idx_logs_team_seq', 'idx_logs_trace',
                         'idx_logs_level_seq', 'idx_logs_intent_seq', 'idx_logs_seq')
  LOOP
    EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.name, 'log_entries_legacy_' || substr(idx.name, 10));
  END LOOP;

  -- 2. The partitioned table, its indexes (built on every partition, present and future) and the
  --    default partition.
  CREATE TABLE log_entries (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    trace_id text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    level text NOT NULL,
    source text NOT NULL,
    intent text NOT NULL,
    message text,
    context jsonb,
    created_at timestamptz DEFAULT now(),
    seq bigint NOT NULL DEFAULT nextval('log_entries_seq'),
    team_id text NOT NULL DEFAULT '',
    subject text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT log_entries_pkey PRIMARY KEY (id, "timestamp")
  ) PARTITION BY RANGE ("timestamp");
  ALTER SEQUENCE log_entries_seq OWNED BY log_entries.seq;
  CREATE INDEX idx_logs_seq ON log_entries (seq);
  CREATE INDEX idx_logs_time_seq ON log_entries ("timestamp" DESC, seq DESC);
  CREATE INDEX idx_logs_source_seq ON log_entries (source, seq);
  CREATE INDEX idx_logs_team_seq ON log_entries (team_id, seq);
  CREATE INDEX idx_logs_trace ON log_entries (trace_id) WHERE trace_id <> '';
  CREATE INDEX idx_logs_level_seq ON log_entries (level, seq);
  CREATE INDEX idx_logs_intent_seq ON log_entries (intent, seq);
  CREATE TABLE log_entries_default PARTITION OF log_entries DEFAULT;

  -- 3. The old rows.
  IF NOT EXISTS (SELECT 1 FROM log_entries_legacy) THEN
    DROP TABLE log_entries_legacy;
    RETURN;
  END IF;
  EXECUTE format('INSERT INTO log_entries_default (%s) SELECT %s FROM log_entries_legacy WHERE "timestamp" >= %L',
                 cols, cols, cutover);
  DELETE FROM log_entries_legacy WHERE "timestamp" >= cutover;

  -- The key (id, timestamp) and the seq index: reused when built beforehand (see above) and valid.
  IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE c.relname = 'log_entries_legacy_pkey' AND i.indrelid = 'log_entries_legacy'::regclass
                AND NOT i.indisvalid) THEN
    DROP INDEX log_entries_legacy_pkey;
  END IF;
  IF to_regclass('log_entries_legacy_pkey') IS NULL THEN
    CREATE UNIQUE INDEX log_entries_legacy_pkey ON log_entries_legacy (id, "timestamp");
  END IF;
  IF old_key IS NOT NULL AND old_key <> 'log_entries_legacy_pkey' THEN
    EXECUTE format('ALTER TABLE log_entries_legacy DROP CONSTRAINT %I', old_key);
  END IF;
  ALTER TABLE log_entries_legacy ALTER COLUMN id SET NOT NULL;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'log_entries_legacy'::regclass AND contype = 'p') THEN
    ALTER TABLE log_entries_legacy ADD CONSTRAINT log_entries_legacy_pkey PRIMARY KEY USING INDEX log_entries_legacy_pkey;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE c.relname = 'log_entries_legacy_seq_idx' AND i.indrelid = 'log_entries_legacy'::regclass
                AND NOT i.indisvalid) THEN
    DROP INDEX log_entries_legacy_seq_idx;
  END IF;
  IF to_regclass('log_entries_legacy_seq_idx') IS NULL THEN
    CREATE INDEX log_entries_legacy_seq_idx ON log_entries_legacy (seq);
  END IF;
  DROP INDEX IF EXISTS log_entries_seq_key;
  DROP INDEX IF EXISTS idx_logs_time;
  DROP INDEX IF EXISTS idx_logs_source;

  EXECUTE format('ALTER TABLE log_entries ATTACH PARTITION log_entries_legacy FOR VALUES FROM (MINVALUE) TO (%L)', cutover);
END
$migration$;
