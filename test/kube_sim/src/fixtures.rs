//! Pod and Service builders for tests and benchmarks: realistic objects in a few words.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A pending pod named `name`, with one container `app`, bound to `node-1`.
pub fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:1".into()),
                ..Default::default()
            }],
            node_name: Some("node-1".into()),
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Adds labels to a pod.
pub fn with_labels(mut pod: Pod, labels: &[(&str, &str)]) -> Pod {
    let map: &mut BTreeMap<String, String> = pod.metadata.labels.get_or_insert_with(Default::default);
    map.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    pod
}

/// Adds a named container port (`dist-api` -> 9100) to the first container.
pub fn with_port(mut pod: Pod, name: &str, port: i32) -> Pod {
    if let Some(container) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        container.ports.get_or_insert_with(Vec::new).push(ContainerPort {
            name: Some(name.to_string()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    pod
}

/// Makes a status `Running` with `ips` (the first is `podIP`) and the Ready condition `ready`.
pub fn running(status: &mut PodStatus, ips: &[&str], ready: bool) {
    status.phase = Some("Running".into());
    status.pod_ip = ips.first().map(|ip| ip.to_string());
    status.pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
    set_ready(status, ready);
}

/// Sets the Ready condition.
pub fn set_ready(status: &mut PodStatus, ready: bool) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "Ready");
    conditions.push(PodCondition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        ..Default::default()
    });
}

/// A running, ready pod at `ip`, in one call.
pub fn ready_pod(name: &str, ip: &str) -> Pod {
    let mut pod = pod(name);
    running(pod.status.get_or_insert_with(Default::default), &[ip], true);
    pod
}

/// A headless Service `name` selecting `selector`, with `publishNotReadyAddresses` (so
/// not-ready pods are listed) and one port per `(name, targetPort name)`, numbered from
/// 4370: the shape PodDist's slice source expects.
pub fn headless_service(name: &str, selector: &[(&str, &str)], ports: &[(&str, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ports: Some(
                ports
                    .iter()
                    .enumerate()
                    .map(|(i, (port, target))| ServicePort {
                        name: Some(port.to_string()),
                        port: 4370 + i as i32,
                        target_port: Some(IntOrString::String(target.to_string())),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}
