-- 003: the registry fold is order-independent (issue 7: after a crash, redelivered older events must give
-- the registry a clean run gives). Each field remembers the (event time, stream seq) of the event it came
-- from, so an older event that arrives late still sets it when it is the newest event carrying that field:
--   status_set_at/seq: the newest event that implied a status;
--   team_at/seq:       the newest event that carried its own team;
--   last_error_at/seq: the newest event with an error message (last_error_summary).
-- Forward-only and safe to run again: each group of columns is added, and its existing rows backfilled,
-- only if the column is not there yet. Backfill: what a row already holds is taken to come from its newest
-- applied event (status_at, status_seq) — the most conservative choice, it never lets an older event
-- override it. Rows without status_at (written the directive's way) stay NULL/0: any event applies.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = 'agent_registry' AND column_name = 'last_error_at') THEN
    ALTER TABLE agent_registry ADD COLUMN last_error_at timestamptz;
    ALTER TABLE agent_registry ADD COLUMN IF NOT EXISTS last_error_seq bigint NOT NULL DEFAULT 0;
    UPDATE agent_registry SET last_error_at = status_at, last_error_seq = status_seq
      WHERE last_error_summary IS NOT NULL AND status_at IS NOT NULL;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = 'agent_registry' AND column_name = 'status_set_at') THEN
    ALTER TABLE agent_registry ADD COLUMN status_set_at timestamptz;
    ALTER TABLE agent_registry ADD COLUMN IF NOT EXISTS status_set_seq bigint NOT NULL DEFAULT 0;
    UPDATE agent_registry SET status_set_at = status_at, status_set_seq = status_seq WHERE status_at IS NOT NULL;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = 'agent_registry' AND column_name = 'team_at') THEN
    ALTER TABLE agent_registry ADD COLUMN team_at timestamptz;
    ALTER TABLE agent_registry ADD COLUMN IF NOT EXISTS team_seq bigint NOT NULL DEFAULT 0;
    UPDATE agent_registry SET team_at = status_at, team_seq = status_seq WHERE status_at IS NOT NULL;
  END IF;
END
$$;
