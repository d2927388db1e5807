//! Fault injection and the request log, for tests that need the API to fail
//! or stall the way a real cluster sometimes does.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Which requests a fault applies to; `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultRule {
    /// Verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: Option<String>,
    /// Plural resource, e.g. `jobs`; a subresource request matches `jobs/status`.
    pub resource: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// The client's `User-Agent`: one replica's requests fail, another's pass.
    pub user_agent: Option<String>,
}

impl FaultRule {
    /// Matches `verb` on `resource` (use "*" for any).
    pub fn new(verb: &str, resource: &str) -> Self {
        let any = |s: &str| if s == "*" { None } else { Some(s.to_string()) };
        FaultRule {
            verb: any(verb),
            resource: any(resource),
            name: None,
            namespace: None,
            user_agent: None,
        }
    }

    /// Narrows the rule to one object name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Narrows the rule to one namespace.
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Narrows the rule to the requests of one client, by its `User-Agent`.
    pub fn from_client(mut self, user_agent: &str) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    fn matches(&self, req: &RequestInfo) -> bool {
        let eq = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        eq(&self.verb, &req.verb)
            && eq(&self.resource, &req.resource)
            && eq(&self.name, &req.name)
            && eq(&self.namespace, &req.namespace)
            && eq(&self.user_agent, &req.user_agent)
    }
}

/// What a request was, in the terms fault rules and the log use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Kubernetes verb.
    pub verb: String,
    /// Plural resource (with `/subresource`), empty for discovery.
    pub resource: String,
    /// Namespace or "".
    pub namespace: String,
    /// Object name or "".
    pub name: String,
    /// Media type of the request body (`Content-Type` without parameters), or "".
    pub content_type: String,
    /// The client's `User-Agent` header, or "" (tells replicas apart, as a
    /// real API server's audit log does).
    pub user_agent: String,
}

/// One served request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The request.
    pub request: RequestInfo,
    /// HTTP status of the response (200 for a watch that started).
    pub status: u16,
    /// When the server began handling it (wall clock, as Lease times are).
    pub received: SystemTime,
    /// When the server answered it (a watch: when it started).
    pub answered: SystemTime,
}

#[derive(Debug, Clone)]
enum Action {
    Fail(u16),
    Delay(Duration),
}

#[derive(Debug)]
struct Fault {
    rule: FaultRule,
    remaining: usize,
    action: Action,
}

#[derive(Debug, Default)]
struct Inner {
    faults: Vec<Fault>,
    log: Vec<LoggedRequest>,
    used: usize,
}

/// Handle for injecting faults into the running API server; clones share state.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    inner: Arc<Mutex<Inner>>,
}

/// What the server should do with a request before serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer with this HTTP status and a Status body.
    Fail(u16),
    /// Wait this long, then serve it.
    Delay(Duration),
    /// Serve it.
    Serve,
}

impl FaultInjector {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fails the next `count` requests matching `rule` with `status_code`
    /// (a meta/v1 Status body; 429 carries Retry-After).
    pub fn fail_next(&self, rule: FaultRule, count: usize, status_code: u16) {
        self.lock().faults.push(Fault {
            rule,
            remaining: count,
            action: Action::Fail(status_code),
        });
    }

    /// Delays the next `count` requests matching `rule` by `duration`.
    pub fn delay_next(&self, rule: FaultRule, count: usize, duration: Duration) {
        self.lock().faults.push(Fault {
            rule,
            remaining: count,
            action: Action::Delay(duration),
        });
    }

    /// Removes all pending faults.
    pub fn clear(&self) {
        self.lock().faults.clear();
    }

    /// How many requests a fault has hit so far (a delayed request counts as
    /// soon as its delay starts).
    pub fn faults_used(&self) -> usize {
        self.lock().used
    }

    /// Requests served so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// Decides what to do with a request, consuming one use of the first matching fault.
    pub fn check(&self, req: &RequestInfo) -> Verdict {
        let mut inner = self.lock();
        let Some(i) = inner
            .faults
            .iter()
            .position(|f| f.remaining > 0 && f.rule.matches(req))
        else {
            return Verdict::Serve;
        };
        inner.used += 1;
        let fault = &mut inner.faults[i];
        fault.remaining -= 1;
        let verdict = match fault.action {
            Action::Fail(code) => Verdict::Fail(code),
            Action::Delay(d) => Verdict::Delay(d),
        };
        if fault.remaining == 0 {
            inner.faults.remove(i);
        }
        verdict
    }

    /// Appends a served request, received at `received` and answered now,
    /// to the log (capped so long runs stay bounded).
    pub fn log(&self, request: RequestInfo, received: SystemTime, status: u16) {
        let answered = SystemTime::now();
        let mut inner = self.lock();
        if inner.log.len() >= 100_000 {
            inner.log.drain(..50_000);
        }
        inner.log.push(LoggedRequest {
            request,
            status,
            received,
            answered,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(verb: &str, resource: &str, name: &str) -> RequestInfo {
        RequestInfo {
            verb: verb.into(),
            resource: resource.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn faults_apply_to_matching_requests_a_limited_number_of_times() {
        let faults = FaultInjector::default();
        faults.fail_next(FaultRule::new("create", "jobs").named("a"), 2, 500);
        faults.delay_next(FaultRule::new("*", "pods"), 1, Duration::from_millis(5));
        assert_eq!(faults.check(&req("create", "jobs", "b")), Verdict::Serve);
        assert_eq!(
            faults.check(&req("create", "jobs", "a")),
            Verdict::Fail(500)
        );
        assert_eq!(
            faults.check(&req("create", "jobs", "a")),
            Verdict::Fail(500)
        );
        assert_eq!(faults.check(&req("create", "jobs", "a")), Verdict::Serve);
        assert_eq!(
            faults.check(&req("list", "pods", "")),
            Verdict::Delay(Duration::from_millis(5))
        );
        assert_eq!(faults.check(&req("list", "pods", "")), Verdict::Serve);
    }

    #[test]
    fn a_fault_from_one_client_leaves_another_clients_requests_alone() {
        let faults = FaultInjector::default();
        faults.fail_next(
            FaultRule::new("update", "leases").from_client("replica-a"),
            1,
            500,
        );
        let from = |agent: &str| RequestInfo {
            user_agent: agent.into(),
            ..req("update", "leases", "op")
        };
        assert_eq!(faults.check(&from("replica-b")), Verdict::Serve);
        assert_eq!(faults.check(&from("replica-a")), Verdict::Fail(500));
        assert_eq!(faults.check(&from("replica-a")), Verdict::Serve);
    }
}
