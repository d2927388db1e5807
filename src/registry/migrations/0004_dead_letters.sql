-- driftline registry, schema 4: notifications that every delivery attempt
-- failed to deliver. The sink's URL is stored without userinfo or query (no
-- secrets); the event id is the CloudEvent id a receiver deduplicates on.
-- Key: the event and the sink, so a re-sent event that fails again updates
-- its row instead of adding one.

CREATE TABLE dead_letters (
    namespace   TEXT NOT NULL,
    model       TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    sink_url    TEXT NOT NULL,
    version     BIGINT,
    event_type  TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    last_error  TEXT NOT NULL,
    failed_us   BIGINT NOT NULL,
    PRIMARY KEY (namespace, model, event_id, sink_url)
);
