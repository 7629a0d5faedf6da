-- Realtime messages shared by every server on this database (see src/realtime.rs): published
-- with INSERT and pg_notify('forgeai_realtime', id), replayed by channel and id, deleted after
-- a configurable retention.
CREATE TABLE realtime_messages (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    topic TEXT NOT NULL,
    data JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX realtime_messages_channel_id ON realtime_messages (channel, id);
CREATE INDEX realtime_messages_created_at ON realtime_messages (created_at);
