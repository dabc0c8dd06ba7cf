-- 001: the directive's schema ("Memory Service, Phase 2B"), unchanged, except:
--  * every statement is IF NOT EXISTS, so this also applies cleanly over a database the directive created;
--  * `vector` is created only where the server offers it (Debian's PostgreSQL 15 has no pgvector), with a
--    warning otherwise, instead of failing the whole migration.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
    CREATE EXTENSION IF NOT EXISTS vector;
  ELSE
    RAISE WARNING 'mycelis-memory: the pgvector extension ("vector") is not available on this PostgreSQL server; continuing without it (install pgvector, e.g. an image with pgvector, to enable vector columns)';
  END IF;
END
$$;

CREATE TABLE IF NOT EXISTS log_entries (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  trace_id TEXT NOT NULL,
  timestamp TIMESTAMPTZ NOT NULL,
  level TEXT NOT NULL,
  source TEXT NOT NULL,
  intent TEXT NOT NULL,
  message TEXT,
  context JSONB,
  created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_logs_time ON log_entries(timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_logs_source ON log_entries(source);

CREATE TABLE IF NOT EXISTS agent_registry (
  agent_id TEXT PRIMARY KEY,
  team_id TEXT NOT NULL,
  status TEXT NOT NULL,
  last_seen TIMESTAMPTZ NOT NULL,
  meta JSONB,
  last_error_summary TEXT
);
