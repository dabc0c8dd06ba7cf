-- 005: agent_registry.rev, the revision of the commit that last wrote each agent (WatchRegistry).
--
-- summary: adds agent_registry.rev (set by a trigger from the sequence agent_registry_rev on every
-- summary: insert and update) and an index on it, so a watcher reads only the agents a commit changed.
-- locks: ACCESS EXCLUSIVE on agent_registry for a moment (the column has a constant default: no rewrite),
-- locks: then SHARE while the index is built (one row per agent); log_entries is not touched.
--
-- Why a trigger rather than the writer setting it: every writer of the registry (this version, an older
-- replica during a rolling upgrade, an operator's UPDATE) moves rev. Writers serialize their commits
-- under pg_advisory_xact_lock (DESIGN 3.2) and take the sequence inside it, so rev order is commit order:
-- a reader that has seen every row up to rev R and later reads rev > R misses nothing of ours.
-- Existing rows keep rev 0 (a watcher's first read loads the whole registry anyway).
-- Safe to run again.
CREATE SEQUENCE IF NOT EXISTS agent_registry_rev AS bigint;
ALTER TABLE agent_registry ADD COLUMN IF NOT EXISTS rev bigint NOT NULL DEFAULT 0;
ALTER SEQUENCE agent_registry_rev OWNED BY agent_registry.rev;
CREATE INDEX IF NOT EXISTS idx_registry_rev ON agent_registry (rev);

CREATE OR REPLACE FUNCTION agent_registry_set_rev() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.rev := nextval('agent_registry_rev');
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS agent_registry_rev ON agent_registry;
CREATE TRIGGER agent_registry_rev BEFORE INSERT OR UPDATE ON agent_registry
  FOR EACH ROW EXECUTE FUNCTION agent_registry_set_rev();
