//! The requests a pod makes of a node, in base units (the quantity
//! grammar itself is `crate::quantity`, shared with the Model's validation).

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use crate::quantity::{BadQuantity, parse_quantity};

/// The extended resource name of NVIDIA GPUs.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// Resources a pod asks for, or a node offers, in base units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Whole `nvidia.com/gpu` devices.
    pub gpus: u64,
}

impl Resources {
    /// Component-wise sum.
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            gpus: self.gpus.saturating_add(other.gpus),
        }
    }

    /// Component-wise maximum.
    pub fn max(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            gpus: self.gpus.max(other.gpus),
        }
    }
}

/// What one container requests; requests default to limits as on a real cluster.
pub fn container_requests(container: &Container) -> Result<Resources, BadQuantity> {
    let resources = container.resources.as_ref();
    let pick = |name: &str| -> Option<&Quantity> {
        let requests = resources.and_then(|r| r.requests.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        requests
            .and_then(|m| m.get(name))
            .or_else(|| limits.and_then(|m| m.get(name)))
    };
    let value = |name: &str| -> Result<f64, BadQuantity> {
        pick(name).map(|q| parse_quantity(&q.0)).unwrap_or(Ok(0.0))
    };
    Ok(Resources {
        cpu_millis: (value("cpu")? * 1000.0).ceil() as u64,
        memory_bytes: value("memory")?.ceil() as u64,
        gpus: value(GPU_RESOURCE)?.ceil() as u64,
    })
}

/// What a pod requests: the larger of its containers' sum and its largest init container.
pub fn pod_requests(spec: &PodSpec) -> Result<Resources, BadQuantity> {
    let mut sum = Resources::default();
    for container in &spec.containers {
        sum = sum.plus(container_requests(container)?);
    }
    let mut init = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        init = init.max(container_requests(container)?);
    }
    Ok(sum.max(init))
}

/// Formats CPU millis as a quantity ("2" or "1500m").
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Formats bytes as a quantity ("8Gi", "1536Ki" or plain bytes).
pub fn format_bytes(bytes: u64) -> String {
    for (suffix, unit) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |pairs: &[(&str, &str)]| -> Option<BTreeMap<String, Quantity>> {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn requests_default_to_limits_and_init_containers_take_the_max() {
        let main = container(
            &[("cpu", "250m")],
            &[("memory", "1Gi"), (GPU_RESOURCE, "1")],
        );
        let init = container(&[("cpu", "2")], &[]);
        let spec = PodSpec {
            containers: vec![main.clone(), main],
            init_containers: Some(vec![init]),
            ..Default::default()
        };
        let r = pod_requests(&spec).unwrap();
        assert_eq!(r.cpu_millis, 2000);
        assert_eq!(r.memory_bytes, 2 << 30);
        assert_eq!(r.gpus, 2);
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_cpu(4000), "4");
        assert_eq!(format_cpu(1500), "1500m");
        assert_eq!(format_bytes(8 << 30), "8Gi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(
            parse_quantity(&format_bytes(3 << 20)).unwrap(),
            (3 << 20) as f64
        );
    }
}
