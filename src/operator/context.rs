//! What every reconcile of one controller shares: the client, the caches,
//! the settings and the little state kept between reconciles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

use super::cached::{CachedJob, CachedPod};
use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;

use crate::api::{Model, ModelVersion};
use crate::registry::RegistryWriter;

use super::apply::Applied;
use super::children::ChildSettings;
use super::clock::Clock;
use super::drift_windows::DriftWindows;
use super::gateway_api::GatewayApiProbe;
use super::index::Children;
use super::observe::Baseline;
use super::realised::RealisedJoins;
use super::scrape::ShadowBaseline;
use super::telemetry::Telemetry;

/// Reflector caches of the Model's children, each indexed by Model.
#[derive(Clone)]
pub struct Stores {
    pub versions: Children<ModelVersion>,
    pub jobs: Children<CachedJob>,
    pub deployments: Children<Deployment>,
    pub services: Children<Service>,
    /// The children's pods: why a training Job stays Pending (the
    /// scheduler's message), and the serving replicas to scrape.
    pub pods: Children<CachedPod>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: ChildSettings,
    pub clock: Arc<Clock>,
    pub recorder: Recorder,
    pub stores: Stores,
    pub http: reqwest::Client,
    pub telemetry: Arc<Telemetry>,
    /// Canary counters at the start of each step, by Model.
    pub baselines: Mutex<HashMap<ObjectRef<Model>, Baseline>>,
    /// The gateways' shadow tally at the first scrape of each shadow stage,
    /// by Model: (candidate, stage start, tally).
    pub shadow_baselines: Mutex<HashMap<ObjectRef<Model>, ShadowBaseline>>,
    /// The champion's drift windows over all its replicas, by Model.
    pub drift_windows: DriftWindows,
    /// The last late-label join of each Model.
    pub realised: RealisedJoins,
    /// The resourceVersion each Model had before our last status write: a
    /// reconcile that sees it again runs on a stale cache and waits.
    pub stale: Mutex<HashMap<ObjectRef<Model>, String>>,
    /// Real time between two reads of the champion's drift windows (and
    /// between two looks for new labels to join).
    pub drift_poll: Duration,
    /// Where decisions are recorded (lineage, evaluations, audit trail), if anywhere.
    pub registry: Option<Arc<RegistryWriter>>,
    /// Whether the cluster serves the Gateway API (then each Model also gets
    /// an HTTPRoute).
    pub gateway_api: GatewayApiProbe,
    /// What each child looked like after driftline last applied it: how an
    /// out-of-band edit is told from a child that is as applied.
    pub applied: Arc<Applied>,
    /// What was last applied to each HTTPRoute and NetworkPolicy
    /// (`kind/namespace/name` → content hash, when): they have no watch
    /// cache, and an unchanged one is not written again for
    /// [`super::apply::REAPPLY_AFTER`].
    pub routes_applied: Mutex<HashMap<String, (String, Instant)>>,
    /// Base URL of the dashboard, for the links in decision Events.
    pub dashboard_url: Option<String>,
    /// Operator-wide notification sinks and delivery settings.
    pub notify: super::notify::NotifyConfig,
    /// The notification queue (`None`: notifications are off, as in unit tests).
    pub notifier: Option<super::notify::Notifier>,
}
