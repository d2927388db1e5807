//! The embedded node: scheduling, local container processes and the
//! Job / Deployment / Service controllers.
