-- Errors the app still had when its run ended (build, module, server or runtime errors found by
-- checking the dev server); NULL when the check passed or did not run.
ALTER TABLE fragments ADD COLUMN app_errors TEXT;
