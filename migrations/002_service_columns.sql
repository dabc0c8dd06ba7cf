-- 002: what the service adds to the directive's schema, and the upgrade of data the directive wrote.
-- Forward-only; every statement is safe to run again (IF NOT EXISTS, guarded updates).

-- log_entries.seq: commit order (DESIGN 3.2). Writers allocate it explicitly under
-- pg_advisory_xact_lock, so seq order is commit order; the default only serves other writers.
CREATE SEQUENCE IF NOT EXISTS log_entries_seq AS bigint;
ALTER TABLE log_entries ADD COLUMN IF NOT EXISTS seq bigint;
ALTER TABLE log_entries ADD COLUMN IF NOT EXISTS team_id text NOT NULL DEFAULT '';
ALTER TABLE log_entries ADD COLUMN IF NOT EXISTS subject text NOT NULL DEFAULT '';
ALTER TABLE log_entries ADD COLUMN IF NOT EXISTS received_at timestamptz;

-- Rows written the directive's way: received when they were created (not when this ran) ...
UPDATE log_entries SET received_at = COALESCE(created_at, timestamp) WHERE received_at IS NULL;
ALTER TABLE log_entries ALTER COLUMN received_at SET DEFAULT now();
ALTER TABLE log_entries ALTER COLUMN received_at SET NOT NULL;

-- ... and numbered in (timestamp, created_at, id) order, after any seq already given, before any new row.
WITH base AS (SELECT COALESCE(max(seq), 0) AS top FROM log_entries),
numbered AS (
  SELECT id, row_number() OVER (ORDER BY timestamp, created_at, id) AS rn
  FROM log_entries WHERE seq IS NULL
)
UPDATE log_entries l SET seq = base.top + numbered.rn
FROM numbered, base WHERE l.id = numbered.id;

-- The sequence continues past every existing row.
SELECT setval('log_entries_seq',
              GREATEST((SELECT COALESCE(max(seq), 0) FROM log_entries), (SELECT last_value FROM log_entries_seq), 1),
              (SELECT COALESCE(max(seq), 0) FROM log_entries) > 0 OR (SELECT is_called FROM log_entries_seq));
ALTER SEQUENCE log_entries_seq OWNED BY log_entries.seq;
ALTER TABLE log_entries ALTER COLUMN seq SET DEFAULT nextval('log_entries_seq');
ALTER TABLE log_entries ALTER COLUMN seq SET NOT NULL;

CREATE UNIQUE INDEX IF NOT EXISTS log_entries_seq_key ON log_entries (seq);
CREATE INDEX IF NOT EXISTS idx_logs_time_seq ON log_entries (timestamp DESC, seq DESC);
CREATE INDEX IF NOT EXISTS idx_logs_source_seq ON log_entries (source, seq);
CREATE INDEX IF NOT EXISTS idx_logs_team_seq ON log_entries (team_id, seq);
CREATE INDEX IF NOT EXISTS idx_logs_trace ON log_entries (trace_id) WHERE trace_id <> '';
CREATE INDEX IF NOT EXISTS idx_logs_level_seq ON log_entries (level, seq);
CREATE INDEX IF NOT EXISTS idx_logs_intent_seq ON log_entries (intent, seq);

-- agent_registry: ordering of applied events (DESIGN 3.3).
ALTER TABLE agent_registry ADD COLUMN IF NOT EXISTS status_at timestamptz;
ALTER TABLE agent_registry ADD COLUMN IF NOT EXISTS status_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE agent_registry ADD COLUMN IF NOT EXISTS updated_at timestamptz;

-- The directive hard-coded ACTIVE; the service reports IDLE|BUSY|OFFLINE|ERROR. status_at stays NULL
-- for those rows (no event ordering known), so the first new event applies.
UPDATE agent_registry SET status = 'IDLE' WHERE status = 'ACTIVE';
UPDATE agent_registry SET status = upper(status)
  WHERE upper(status) IN ('IDLE', 'BUSY', 'OFFLINE', 'ERROR') AND status <> upper(status);
UPDATE agent_registry SET status = 'IDLE' WHERE status NOT IN ('IDLE', 'BUSY', 'OFFLINE', 'ERROR');
UPDATE agent_registry SET updated_at = last_seen WHERE updated_at IS NULL;

CREATE INDEX IF NOT EXISTS idx_registry_team ON agent_registry (team_id, agent_id);

-- Dead letters (DESIGN 4): invalid messages and rows PostgreSQL rejected, with their raw bytes.
CREATE TABLE IF NOT EXISTS ingest_rejects (
  id bigserial PRIMARY KEY,
  received_at timestamptz NOT NULL,
  subject text NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}',
  payload bytea NOT NULL,
  reason text NOT NULL,
  detail text NOT NULL DEFAULT '',
  sqlstate text,
  stream_seq bigint NOT NULL DEFAULT 0,
  replayed_at timestamptz
);
CREATE INDEX IF NOT EXISTS idx_rejects_received ON ingest_rejects (received_at);
