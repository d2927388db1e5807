-- driftline registry, schema 3: every check of a canary analysis as JSON
-- (name, value, bound, passed; for a sequential check its evidence and the
-- always-valid interval lower/upper). NULL: recorded before schema 3.

ALTER TABLE canary_analyses ADD COLUMN checks TEXT;
