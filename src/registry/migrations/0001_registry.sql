-- driftline registry, schema 1.
-- One schema for SQLite and PostgreSQL: only TEXT, BIGINT, SMALLINT (0/1 flags)
-- and DOUBLE PRECISION (NULL for NaN), which sqlx's Any driver reads alike on
-- both. Times are microseconds since the Unix epoch, UTC. Every table's
-- primary key is the record's natural key, so rewriting a record is a no-op;
-- the keys lead with (namespace, model) so one model's rows are one index range.

CREATE TABLE model_versions (
    namespace        TEXT NOT NULL,
    model            TEXT NOT NULL,
    version          BIGINT NOT NULL,
    training_trigger TEXT NOT NULL,
    reason           TEXT NOT NULL,
    seed             BIGINT NOT NULL,
    config_hash      TEXT NOT NULL,
    dataset_digest   TEXT,
    artifact_uri     TEXT,
    feedback_rows    BIGINT,
    code_version     TEXT NOT NULL,
    created_us       BIGINT NOT NULL,
    PRIMARY KEY (namespace, model, version)
);

CREATE TABLE evaluations (
    namespace    TEXT NOT NULL,
    model        TEXT NOT NULL,
    version      BIGINT NOT NULL,
    passed       SMALLINT NOT NULL,
    summary      TEXT NOT NULL,
    metrics      TEXT NOT NULL,
    report       TEXT NOT NULL,
    evaluated_us BIGINT NOT NULL,
    PRIMARY KEY (namespace, model, version)
);

CREATE TABLE training_epochs (
    namespace         TEXT NOT NULL,
    model             TEXT NOT NULL,
    version           BIGINT NOT NULL,
    epoch             BIGINT NOT NULL,
    train_loss        DOUBLE PRECISION,
    validation_loss   DOUBLE PRECISION,
    metric_name       TEXT,
    metric_value      DOUBLE PRECISION,
    PRIMARY KEY (namespace, model, version, epoch)
);

CREATE TABLE drift_readings (
    namespace  TEXT NOT NULL,
    model      TEXT NOT NULL,
    window_end_us BIGINT NOT NULL,
    feature    TEXT NOT NULL,
    version    BIGINT NOT NULL,
    statistic  TEXT NOT NULL,
    value      DOUBLE PRECISION,
    threshold  DOUBLE PRECISION,
    drifted    SMALLINT NOT NULL,
    PRIMARY KEY (namespace, model, window_end_us, feature, version)
);

CREATE TABLE canary_analyses (
    namespace       TEXT NOT NULL,
    model           TEXT NOT NULL,
    version         BIGINT NOT NULL,
    step            BIGINT NOT NULL,
    window_end_us   BIGINT NOT NULL,
    window_start_us BIGINT NOT NULL,
    weight          BIGINT NOT NULL,
    canary_requests BIGINT NOT NULL,
    stable_requests BIGINT NOT NULL,
    canary_errors   BIGINT NOT NULL,
    stable_errors   BIGINT NOT NULL,
    canary_p99_ms   DOUBLE PRECISION,
    stable_p99_ms   DOUBLE PRECISION,
    divergence      DOUBLE PRECISION,
    verdict         TEXT NOT NULL,
    message         TEXT NOT NULL,
    PRIMARY KEY (namespace, model, version, step, window_end_us)
);

-- from_version / to_version: 0 means "no version" (versions start at 1), so
-- the natural key has no NULL in it (NULLs never conflict in a unique key).
CREATE TABLE champion_changes (
    namespace        TEXT NOT NULL,
    model            TEXT NOT NULL,
    changed_us       BIGINT NOT NULL,
    to_version       BIGINT NOT NULL,
    from_version     BIGINT NOT NULL,
    action           TEXT NOT NULL,
    change_trigger   TEXT NOT NULL,
    actor            TEXT,
    reason           TEXT NOT NULL,
    PRIMARY KEY (namespace, model, changed_us, to_version)
);
