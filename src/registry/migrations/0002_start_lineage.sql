-- driftline registry, schema 2: where each version's first weights came from
-- (the manifest's `start`): `warm`, `init` or `cold`, the parent weights'
-- artifact or checkpoint and their sha256, and why a warm start fell back to
-- cold. NULL start_from: not known yet (training not finished), or a version
-- recorded before schema 2.

ALTER TABLE model_versions ADD COLUMN start_from TEXT;
ALTER TABLE model_versions ADD COLUMN start_parent TEXT;
ALTER TABLE model_versions ADD COLUMN start_parent_digest TEXT;
ALTER TABLE model_versions ADD COLUMN start_reason TEXT;
