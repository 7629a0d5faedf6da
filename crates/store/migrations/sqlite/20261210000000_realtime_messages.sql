-- Nothing to do: on SQLite the realtime messages live in the embedded engine's journal. This
-- file keeps the migration versions of both databases in step.
SELECT 1;
