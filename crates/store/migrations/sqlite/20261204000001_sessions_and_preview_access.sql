-- Tokens get an id (listing and revoking them never shows the secret or its hash), an expiry
-- (sessions at most 30 days, login links 15 minutes, API tokens none) and when they were last
-- used. A token past its expiry authenticates nothing.
ALTER TABLE api_tokens ADD COLUMN id TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE api_tokens ADD COLUMN last_used_at TEXT;
-- Sessions and login links made before they could expire would never end: they end here
-- (sign in again; `forgeai users login <name>` prints a new link).
DELETE FROM api_tokens WHERE kind <> 'api';
-- API tokens keep working; their id is derived from the hash (in the shape of a UUID).
UPDATE api_tokens SET id = substr(token_hash, 1, 8) || '-' || substr(token_hash, 9, 4) || '-'
    || substr(token_hash, 13, 4) || '-' || substr(token_hash, 17, 4) || '-' || substr(token_hash, 21, 12);
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);

-- A project's preview is served to its owner only, unless the owner made it public.
ALTER TABLE projects ADD COLUMN public BOOLEAN NOT NULL DEFAULT FALSE;
-- The preview proxy finds a sandbox's project (and so its owner) on every request.
CREATE INDEX projects_sandbox_id ON projects (sandbox_id);

-- Keys the server makes once and shares between its processes (e.g. the preview grant key).
CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL
);
