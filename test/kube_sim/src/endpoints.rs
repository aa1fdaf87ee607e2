//! The endpoint-slice controller, as kube-controller-manager runs it: for every Service
//! with a selector, `discovery.k8s.io/v1` EndpointSlices listing the pods it selects.
//!
//! [`reconcile`] is the decision, a pure function of the Service, the pods of its
//! namespace and its current slices; [`run`] applies it whenever a pod, a Service or
//! one of the controller's slices changes. The rules follow the real controller:
//!
//! - one slice per address family of the Service (`spec.ipFamilies`), holding at most
//!   [`MAX_ENDPOINTS_PER_SLICE`] endpoints, one address each; pods without an address of
//!   that family, and finished pods (`Succeeded`, `Failed`), are left out;
//! - conditions: `serving` is the pod's `Ready` condition, `terminating` is set once the
//!   pod has a deletion timestamp, and `ready` is `serving && !terminating`, or always
//!   true with `spec.publishNotReadyAddresses`;
//! - `hostname` is the pod's `spec.hostname` when its `spec.subdomain` is the Service's
//!   name; `nodeName` and `targetRef` (the pod) are always set;
//! - ports are the Service's, named as there, with a named `targetPort` resolved to the
//!   pod's container port of that name (a pod lacking it goes to a slice without that
//!   port: endpoints are grouped by their port set);
//! - an endpoint stays in its slice while its pod lives (updated in place); a slice that
//!   loses all its endpoints is deleted; new endpoints fill the slices being updated
//!   anyway, then new slices, the last partial batch going into an untouched slice with
//!   room for all of it; a Service with no endpoint at all keeps one empty placeholder;
//! - slices carry `kubernetes.io/service-name`, `endpointslice.kubernetes.io/managed-by:
//!   endpointslice-controller.k8s.io`, the Service's own labels (and
//!   `service.kubernetes.io/headless` for a headless one), and an owner reference to the
//!   Service; slices managed by anyone else are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::broadcast::error::RecvError;

use crate::selector::LabelSelector;
use crate::shared::Shared;
use crate::store::{EventType, Filter, ListVersion};

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name in [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The label marking slices of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// kube-controller-manager's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What to change so that the slices match the pods.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New slices (named by `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Changed slices, with the resourceVersion they were read at.
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    /// Whether nothing is to change.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Whether this controller manages `slice`.
pub fn managed(slice: &EndpointSlice) -> bool {
    label(&slice.metadata, MANAGED_BY_LABEL) == Some(CONTROLLER_NAME)
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// The Service's pod selector; `None` when it has none (then nobody manages its slices).
pub fn pod_selector(service: &Service) -> Option<LabelSelector> {
    let selector = service.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())?;
    Some(LabelSelector::equal(selector))
}

/// The slices `service` should have, given `pods` (any pods of its namespace) and its
/// current slices (those labelled with its name; only the managed ones are considered).
pub fn reconcile(service: &Service, pods: &[Arc<Pod>], existing: &[Arc<EndpointSlice>]) -> Plan {
    let mut plan = Plan::default();
    let Some(selector) = pod_selector(service) else {
        return plan;
    };
    let mut pods: Vec<&Pod> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| p.metadata.namespace == service.metadata.namespace && selector.matches(p.metadata.labels.as_ref()))
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut existing: Vec<&EndpointSlice> = existing.iter().map(|s| &**s).filter(|s| managed(s)).collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let families = address_types(service);
    let mut kept = 0;
    for family in &families {
        let desired = desired_endpoints(service, &pods, family);
        let slices: Vec<&EndpointSlice> = existing
            .iter()
            .copied()
            .filter(|s| s.address_type == *family && !is_placeholder(s))
            .collect();
        kept += reconcile_family(service, family, desired, &slices, &mut plan);
    }
    // Slices of a family the Service no longer has, and the placeholder.
    let mut placeholder = None;
    for slice in &existing {
        if is_placeholder(slice) && placeholder.is_none() {
            placeholder = Some(*slice);
        } else if is_placeholder(slice) || !families.contains(&slice.address_type) {
            plan.delete.push(name_of(slice));
        }
    }
    match (kept + plan.create.len() > 0, placeholder) {
        (true, Some(slice)) => plan.delete.push(name_of(slice)),
        (false, None) => plan.create.push(new_slice(service, &families[0], None, Vec::new())),
        _ => {}
    }
    plan
}

/// A placeholder: a managed slice without endpoints or ports.
fn is_placeholder(slice: &EndpointSlice) -> bool {
    slice.endpoints.is_empty() && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

fn name_of(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

/// `IPv4`, `IPv6` or both, from `spec.ipFamilies` (IPv4 when unset).
pub fn address_types(service: &Service) -> Vec<String> {
    let families: Vec<String> = service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f == "IPv4" || f == "IPv6")
        .collect();
    if families.is_empty() {
        vec!["IPv4".to_string()]
    } else {
        families
    }
}

/// Endpoints of one port set, in pod-name order, keyed by pod uid.
type Group = (Option<Vec<EndpointPort>>, Vec<(String, Endpoint)>);

/// The endpoints `family` should list, grouped by port set.
fn desired_endpoints(service: &Service, pods: &[&Pod], family: &str) -> BTreeMap<String, Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        let Some(endpoint) = endpoint(service, pod, family) else {
            continue;
        };
        let ports = endpoint_ports(service, pod);
        let group = groups.entry(port_key(&ports)).or_insert_with(|| (ports, Vec::new()));
        group.1.push((pod.metadata.uid.clone().unwrap_or_default(), endpoint));
    }
    groups
}

fn port_key(ports: &Option<Vec<EndpointPort>>) -> String {
    serde_json::to_string(ports).unwrap_or_default()
}

/// The endpoint of `pod` in a `family` slice, if it has one.
pub fn endpoint(service: &Service, pod: &Pod, family: &str) -> Option<Endpoint> {
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        return None;
    }
    let ips = status.pod_ips.iter().flatten().map(|ip| ip.ip.clone());
    let address = ips.chain(status.pod_ip.clone()).find(|ip| {
        ip.parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_ipv4() == (family == "IPv4"))
    })?;
    let serving = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let spec = pod.spec.as_ref();
    let hostname = spec
        .filter(|s| s.subdomain.is_some() && s.subdomain == service.metadata.name)
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    Some(Endpoint {
        addresses: vec![address],
        conditions: Some(EndpointConditions {
            ready: Some(publish_not_ready || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The Service's ports as `pod` serves them; a named `targetPort` the pod does not
/// declare leaves that port out.
pub fn endpoint_ports(service: &Service, pod: &Pod) -> Option<Vec<EndpointPort>> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let mut resolved: Vec<EndpointPort> = ports
        .iter()
        .filter_map(|p| {
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let number = match &p.target_port {
                None => p.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => {
                    containers
                        .iter()
                        .flat_map(|c| c.ports.iter().flatten())
                        .find(|cp| {
                            cp.name.as_deref() == Some(name.as_str())
                                && cp.protocol.as_deref().unwrap_or("TCP") == protocol
                        })?
                        .container_port
                }
            };
            Some(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(protocol),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    resolved.sort_by(|a, b| a.name.cmp(&b.name));
    (!resolved.is_empty()).then_some(resolved)
}

/// Brings one family's slices to `desired`; returns how many existing slices stay.
fn reconcile_family(
    service: &Service,
    family: &str,
    mut desired: BTreeMap<String, Group>,
    slices: &[&EndpointSlice],
    plan: &mut Plan,
) -> usize {
    // Endpoints not yet placed, per port set.
    let mut pending: BTreeMap<String, BTreeMap<String, Endpoint>> = desired
        .iter()
        .map(|(key, (_, endpoints))| (key.clone(), endpoints.iter().cloned().collect()))
        .collect();
    // (slice, changed) for the slices that stay.
    let mut staying: Vec<(EndpointSlice, bool)> = Vec::new();
    for slice in slices {
        let key = port_key(&slice.ports);
        let Some(wanted) = pending.get_mut(&key) else {
            plan.delete.push(name_of(slice));
            continue;
        };
        let mut seen = BTreeSet::new();
        let endpoints: Vec<Endpoint> = slice
            .endpoints
            .iter()
            .filter_map(|e| {
                let uid = e.target_ref.as_ref()?.uid.clone()?;
                seen.insert(uid.clone()).then_some(())?;
                wanted.remove(&uid)
            })
            .collect();
        if endpoints.is_empty() {
            plan.delete.push(name_of(slice));
            continue;
        }
        let mut updated = (*slice).clone();
        updated.endpoints = endpoints;
        let mut fresh = new_slice(service, family, slice.ports.clone(), Vec::new());
        // The controller owns the labels and owner reference too.
        let changed = updated.endpoints != slice.endpoints
            || updated.metadata.labels != fresh.metadata.labels
            || updated.metadata.owner_references != fresh.metadata.owner_references;
        updated.metadata.labels = fresh.metadata.labels.take();
        updated.metadata.owner_references = fresh.metadata.owner_references.take();
        staying.push((updated, changed));
    }
    for (key, (ports, order)) in std::mem::take(&mut desired) {
        let left = pending.remove(&key).unwrap_or_default();
        // Keep pod-name order for what is placed now.
        let mut new: Vec<Endpoint> = order
            .into_iter()
            .filter(|(uid, _)| left.contains_key(uid))
            .map(|(uid, _)| left[&uid].clone())
            .collect();
        let same_ports = |s: &EndpointSlice| port_key(&s.ports) == key;
        // First into slices that change anyway.
        for (slice, changed) in staying.iter_mut().filter(|(s, c)| *c && same_ports(s)) {
            let room = MAX_ENDPOINTS_PER_SLICE.saturating_sub(slice.endpoints.len());
            let take = room.min(new.len());
            slice.endpoints.extend(new.drain(..take));
            *changed = true;
        }
        // Full slices of new ones; the last partial batch into an untouched slice
        // with room for all of it, else a new slice too.
        let mut batches: Vec<Vec<Endpoint>> = Vec::new();
        while !new.is_empty() {
            let take = MAX_ENDPOINTS_PER_SLICE.min(new.len());
            batches.push(new.drain(..take).collect());
        }
        if let Some(last) = batches.last().filter(|b| b.len() < MAX_ENDPOINTS_PER_SLICE) {
            let fits = staying
                .iter_mut()
                .filter(|(s, c)| !*c && same_ports(s))
                .filter(|(s, _)| s.endpoints.len() + last.len() <= MAX_ENDPOINTS_PER_SLICE)
                .min_by_key(|(s, _)| MAX_ENDPOINTS_PER_SLICE - s.endpoints.len());
            if let Some((slice, changed)) = fits {
                slice.endpoints.extend(batches.pop().unwrap_or_default());
                *changed = true;
            }
        }
        for batch in batches {
            plan.create.push(new_slice(service, family, ports.clone(), batch));
        }
    }
    let kept = staying.len();
    plan.update
        .extend(staying.into_iter().filter(|(_, changed)| *changed).map(|(s, _)| s));
    kept
}

/// A new managed slice of `service`.
fn new_slice(
    service: &Service,
    family: &str,
    ports: Option<Vec<EndpointPort>>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != SERVICE_NAME_LABEL && k != MANAGED_BY_LABEL && k != HEADLESS_LABEL)
        .collect();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    let headless = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: service.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: family.to_string(),
        endpoints,
        ports,
    }
}

/// Runs the controller until the simulator goes away.
pub fn spawn(shared: &Arc<Shared>) {
    let mut pods = shared.store.subscribe();
    let mut services = shared.services.subscribe();
    let mut slices = shared.slices.subscribe();
    let weak: Weak<Shared> = Arc::downgrade(shared);
    tokio::spawn(async move {
        loop {
            // (namespace, Some(service)) to sync one Service, (namespace, None) for the
            // Services selecting a pod: decided below, after the event.
            let work: Work = tokio::select! {
                change = pods.recv() => match change {
                    Ok(change) => {
                        let mut labels = vec![change.new.metadata.labels.clone()];
                        labels.extend(change.old.as_ref().map(|o| o.metadata.labels.clone()));
                        Work::Pod(change.new.metadata.namespace.clone().unwrap_or_default(), labels)
                    }
                    Err(RecvError::Lagged(_)) => Work::All,
                    Err(RecvError::Closed) => return,
                },
                change = services.recv() => match change {
                    Ok(change) => Work::Service(
                        change.new.metadata.namespace.clone().unwrap_or_default(),
                        change.new.metadata.name.clone().unwrap_or_default(),
                        change.kind == EventType::Deleted,
                    ),
                    Err(RecvError::Lagged(_)) => Work::All,
                    Err(RecvError::Closed) => return,
                },
                change = slices.recv() => match change {
                    Ok(change) if managed(&change.new) => match label(&change.new.metadata, SERVICE_NAME_LABEL) {
                        Some(service) => Work::Service(
                            change.new.metadata.namespace.clone().unwrap_or_default(),
                            service.to_string(),
                            false,
                        ),
                        None => continue,
                    },
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => Work::All,
                    Err(RecvError::Closed) => return,
                },
            };
            let Some(shared) = weak.upgrade() else { return };
            work.apply(&shared);
        }
    });
}

enum Work {
    Pod(String, Vec<Option<BTreeMap<String, String>>>),
    Service(String, String, bool),
    All,
}

impl Work {
    fn apply(self, shared: &Shared) {
        match self {
            Work::Pod(namespace, labels) => {
                for service in services_in(shared, Some(&namespace)) {
                    let selects = pod_selector(&service).is_some_and(|s| labels.iter().any(|l| s.matches(l.as_ref())));
                    if selects {
                        sync(shared, &service);
                    }
                }
            }
            Work::Service(namespace, name, deleted) => match shared.services.get(&namespace, &name) {
                Ok(service) if !deleted => sync(shared, &service),
                // Garbage collection: the slices it owned go with the Service.
                _ => {
                    for slice in slices_of(shared, &namespace, &name).iter().filter(|s| managed(s)) {
                        let _ = shared.slices.delete(&namespace, &name_of(slice), None);
                    }
                }
            },
            Work::All => {
                for service in services_in(shared, None) {
                    sync(shared, &service);
                }
            }
        }
    }
}

fn services_in(shared: &Shared, namespace: Option<&str>) -> Vec<Arc<Service>> {
    let filter = Filter {
        namespace: namespace.map(String::from),
        ..Default::default()
    };
    shared
        .services
        .list(&filter, ListVersion::Latest, None, None)
        .map(|page| page.items)
        .unwrap_or_default()
}

fn slices_of(shared: &Shared, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
    let filter = Filter {
        namespace: Some(namespace.to_string()),
        labels: LabelSelector::equal(&[(SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
        ..Default::default()
    };
    shared
        .slices
        .list(&filter, ListVersion::Latest, None, None)
        .map(|page| page.items)
        .unwrap_or_default()
}

/// Applies [`reconcile`]'s plan for one Service. A write that conflicts (someone changed
/// the slice meanwhile) is dropped: that change is an event, and the next sync redoes it.
fn sync(shared: &Shared, service: &Service) {
    if pod_selector(service).is_none() {
        return;
    }
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let filter = Filter {
        namespace: Some(namespace.clone()),
        ..Default::default()
    };
    let pods = shared
        .store
        .list(&filter, ListVersion::Latest, None, None)
        .map(|page| page.items)
        .unwrap_or_default();
    let plan = reconcile(service, &pods, &slices_of(shared, &namespace, &name));
    for slice in plan.delete {
        let _ = shared.slices.delete(&namespace, &slice, None);
    }
    for slice in plan.update {
        let slice_name = name_of(&slice);
        let _ = shared.slices.update(&namespace, &slice_name, |_| Ok(slice));
    }
    for slice in plan.create {
        let _ = shared.slices.create(&namespace, slice);
    }
}
