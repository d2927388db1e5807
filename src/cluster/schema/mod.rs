//! CRD structural schemas: validation, defaulting, pruning, CEL rules, and
//! server-side Table rendering of printer columns.
