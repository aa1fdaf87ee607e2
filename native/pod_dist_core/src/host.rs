//! Reading a host name as Kubernetes DNS would: which pod-identifying form it is.
//!
//! The forms, with `<domain>` the cluster domain (usually `cluster.local`), any of
//! them with or without a trailing dot and in any letter case:
//!
//! | host | meaning |
//! |---|---|
//! | `10.42.2.46`, `fd00::1` | an IP |
//! | `web-0` | a pod name |
//! | `web-0.prod` | pod `web-0` in namespace `prod`, or hostname `web-0` of subdomain `prod` |
//! | `web-0.prod.pod[.<domain>]` | pod `web-0` in namespace `prod` |
//! | `10-42-2-46.prod.pod[.<domain>]` | the pod of namespace `prod` holding that IP |
//! | `web-0.db.prod[.svc[.<domain>]]` | the pod with hostname `web-0` and subdomain `db` in `prod` |
//!
//! Which pod, if any, each form reaches is the index's decision
//! ([`crate::index::PodIndex::resolve`]).
//!
//! The other way round, [`hosts`] builds the host part of a pod's node names in each
//! form a strategy may ask for; every host it builds parses back to a form that reaches
//! that pod (the index's tests check it for arbitrary pods).

use std::net::IpAddr;

use crate::pod::PodRecord;

/// A host name, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal.
    Ip(IpAddr),
    /// A bare pod name.
    Name(String),
    /// `a.b`: pod `a` in namespace `b`, or hostname `a` of subdomain `b`.
    NameDotNamespace(String, String),
    /// `name.namespace.pod`: a pod by name.
    Pod {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
    },
    /// `a-b-c-d.namespace.pod`: the pod holding an IP.
    DashedIp {
        /// The IP spelled by the first label.
        ip: IpAddr,
        /// Namespace.
        namespace: String,
        /// Unqualified, the label may also be a pod's name (`a--a` spells `a::a`).
        or_pod: Option<String>,
    },
    /// `hostname.subdomain.namespace[.svc]`: a pod by `spec.hostname` and `spec.subdomain`.
    Hostname {
        /// `spec.hostname`
        hostname: String,
        /// `spec.subdomain`
        subdomain: String,
        /// Namespace.
        namespace: String,
    },
    /// Anything else: not a Kubernetes pod name.
    Other,
}

impl Host {
    /// Whether the host may name a pod that the index does not hold yet: every pod form,
    /// but not an IP literal (it is its own answer), not `localhost` (the machine itself,
    /// never a peer pod) and not `Other` (no pod is named so). Only such hosts are worth
    /// waiting for while the initial pod list is not in.
    pub fn may_be_pod(&self) -> bool {
        match self {
            Host::Ip(_) | Host::Other => false,
            Host::Name(name) => name != "localhost",
            _ => true,
        }
    }
}

/// The longest host name DNS allows; longer input is not a pod name.
const MAX_HOST: usize = 253;

/// Classifies `host` for a cluster whose DNS domain is `cluster_domain`.
pub fn parse(host: &str, cluster_domain: &str) -> Host {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST {
        return Host::Other;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Host::Ip(ip);
    }
    let host = host.to_ascii_lowercase();
    let domain = cluster_domain.trim_matches('.').to_ascii_lowercase();
    let (rest, qualified) = match host.strip_suffix(domain.as_str()).and_then(|r| r.strip_suffix('.')) {
        Some(rest) if !domain.is_empty() => (rest, true),
        _ => (host.as_str(), false),
    };
    let labels: Vec<&str> = rest.split('.').collect();
    if !labels.iter().all(|l| is_label(l)) {
        return Host::Other;
    }
    let own = |s: &str| s.to_string();
    match labels.as_slice() {
        [name] if !qualified => Host::Name(own(name)),
        [a, b] if !qualified => Host::NameDotNamespace(own(a), own(b)),
        [first, namespace, "pod"] => match dashed_ip(first) {
            Some(ip) => Host::DashedIp {
                ip,
                namespace: own(namespace),
                or_pod: (!qualified).then(|| own(first)),
            },
            // Cluster DNS has no such record (it names pods by dashed IP only), but the
            // meaning is plain, qualified or not.
            None => Host::Pod {
                name: own(first),
                namespace: own(namespace),
            },
        },
        [hostname, subdomain, namespace, "svc"] => Host::Hostname {
            hostname: own(hostname),
            subdomain: own(subdomain),
            namespace: own(namespace),
        },
        [hostname, subdomain, namespace] if !qualified => Host::Hostname {
            hostname: own(hostname),
            subdomain: own(subdomain),
            namespace: own(namespace),
        },
        _ => Host::Other,
    }
}

/// A DNS label: 1 to 63 of `a-z0-9-` (already lowercased), not starting or ending in `-`.
fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// `10-42-2-46` -> 10.42.2.46; `fd00--1` -> fd00::1, as CoreDNS spells pod IPs.
fn dashed_ip(label: &str) -> Option<IpAddr> {
    let v4 = label.replace('-', ".");
    if let Ok(ip @ IpAddr::V4(_)) = v4.parse::<IpAddr>() {
        return Some(ip);
    }
    match label.replace('-', ":").parse::<IpAddr>() {
        Ok(ip @ IpAddr::V6(_)) => Some(ip),
        _ => None,
    }
}

/// The cluster domain named by a pod's `/etc/resolv.conf`: the domain `D` of the search
/// list `<namespace>.svc.D svc.D D` that the kubelet writes. All three entries must be
/// there, so neither a namespace named `svc` (`svc.svc.D svc.D D`) nor search domains
/// of the node's own are taken for it.
pub fn cluster_domain_from_resolv_conf(resolv_conf: &str) -> Option<String> {
    let search: Vec<&str> = resolv_conf
        .lines()
        .filter_map(|line| line.trim().strip_prefix("search"))
        .flat_map(str::split_whitespace)
        .map(|entry| entry.trim_end_matches('.'))
        .collect();
    let has = |entry: &str| search.iter().any(|e| e.eq_ignore_ascii_case(entry));
    search
        .iter()
        .filter_map(|entry| entry.strip_prefix("svc."))
        .find(|domain| {
            !domain.is_empty()
                && has(domain)
                && search
                    .iter()
                    .any(|e| e.strip_suffix(&format!(".svc.{domain}")).is_some_and(is_label))
        })
        .map(|domain| domain.to_ascii_lowercase())
}

/// The cluster domain when none is configured: `/etc/resolv.conf`'s, else `cluster.local`.
pub fn detect_cluster_domain() -> String {
    let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    cluster_domain_from_resolv_conf(&resolv_conf).unwrap_or_else(|| DEFAULT_CLUSTER_DOMAIN.into())
}

/// Kubernetes' default cluster domain.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The host part of a pod's node names, in each form a strategy may ask for; `None`
/// where the pod has no host of that form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    /// `web-0`: the pod's name, when it is one DNS label (a name with dots would read as
    /// another form). It reaches the pod from its own namespace only.
    pub pod_name: Option<String>,
    /// `10.42.2.46`: the pod's first IP. Not for hostNetwork pods, whose IP is their
    /// node's and names no pod.
    pub ip: Option<String>,
    /// `10-42-2-46.prod.pod.<domain>`: the pod's first IP as cluster DNS spells it (an
    /// IPv6 address compressed, unless that starts or ends the label with `-`). Not for
    /// hostNetwork pods.
    pub dashed_ip: Option<String>,
    /// `web-0.db.prod.svc.<domain>`: only for a pod with both `spec.hostname` and
    /// `spec.subdomain`, the pods cluster DNS has a hostname record for.
    pub hostname_fqdn: Option<String>,
}

/// The hosts of `pod` in a cluster whose DNS domain is `cluster_domain`.
pub fn hosts(pod: &PodRecord, cluster_domain: &str) -> Hosts {
    let domain = cluster_domain.trim_matches('.').to_ascii_lowercase();
    let qualify = |host: String| {
        if domain.is_empty() {
            host
        } else {
            format!("{host}.{domain}")
        }
    };
    let ip = pod.ip().filter(|_| !pod.host_network);
    Hosts {
        pod_name: Some(pod.name.to_string()).filter(|name| is_label(name)),
        ip: ip.map(|ip| ip.to_string()),
        dashed_ip: ip.map(|ip| qualify(format!("{}.{}.pod", dashed(ip), pod.namespace))),
        hostname_fqdn: match (&pod.hostname, &pod.subdomain) {
            (Some(hostname), Some(subdomain)) if is_label(hostname) && is_label(subdomain) => {
                Some(qualify(format!("{hostname}.{subdomain}.{}.svc", pod.namespace)))
            }
            _ => None,
        },
    }
}

/// `10.42.2.46` -> `10-42-2-46`; `fd00::1` -> `fd00--1`, but `::1` -> `0-0-0-0-0-0-0-1`
/// (a label cannot start or end with `-`). [`dashed_ip`] reads both back.
fn dashed(ip: IpAddr) -> String {
    let compressed = ip.to_string().replace(['.', ':'], "-");
    match ip {
        IpAddr::V6(v6) if compressed.starts_with('-') || compressed.ends_with('-') => v6
            .segments()
            .iter()
            .map(|s| format!("{s:x}"))
            .collect::<Vec<_>>()
            .join("-"),
        _ => compressed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "cluster.local";

    #[test]
    fn every_form_is_recognised() {
        let s = |x: &str| x.to_string();
        assert_eq!(parse("10.42.2.46", DOMAIN), Host::Ip("10.42.2.46".parse().unwrap()));
        assert_eq!(parse("fd00::1", DOMAIN), Host::Ip("fd00::1".parse().unwrap()));
        assert_eq!(parse("Web-0", DOMAIN), Host::Name(s("web-0")));
        assert_eq!(
            parse("web-0.prod", DOMAIN),
            Host::NameDotNamespace(s("web-0"), s("prod"))
        );
        assert_eq!(
            parse("web-0.prod.pod", DOMAIN),
            Host::Pod {
                name: s("web-0"),
                namespace: s("prod")
            }
        );
        let dashed = Host::DashedIp {
            ip: "10.42.2.46".parse().unwrap(),
            namespace: s("prod"),
            or_pod: None,
        };
        assert_eq!(parse("10-42-2-46.prod.pod.cluster.local.", DOMAIN), dashed);
        assert_eq!(
            parse("10-42-2-46.prod.pod", DOMAIN),
            Host::DashedIp {
                ip: "10.42.2.46".parse().unwrap(),
                namespace: s("prod"),
                or_pod: Some(s("10-42-2-46")),
            }
        );
        assert_eq!(
            parse("fd00--1.prod.pod.cluster.local", DOMAIN),
            Host::DashedIp {
                ip: "fd00::1".parse().unwrap(),
                namespace: s("prod"),
                or_pod: None
            }
        );
        let by_hostname = Host::Hostname {
            hostname: s("web-0"),
            subdomain: s("db"),
            namespace: s("prod"),
        };
        assert_eq!(
            parse("web-0.prod.pod.cluster.local", DOMAIN),
            Host::Pod {
                name: s("web-0"),
                namespace: s("prod")
            },
            "qualified pod names are pod names too"
        );
        assert_eq!(parse("web-0.db.prod.svc.cluster.local", DOMAIN), by_hostname);
        assert_eq!(parse("web-0.db.prod.svc", DOMAIN), by_hostname);
        assert_eq!(parse("web-0.db.prod", DOMAIN), by_hostname);
    }

    #[test]
    fn other_domains_and_garbage_are_not_pods() {
        assert_eq!(parse("example.com.svc.other.domain", DOMAIN), Host::Other);
        assert_eq!(parse("", DOMAIN), Host::Other);
        assert_eq!(parse("a..b", DOMAIN), Host::Other);
        assert_eq!(parse("-bad", DOMAIN), Host::Other);
        assert_eq!(parse("under_score", DOMAIN), Host::Other);
        assert_eq!(parse(&"a".repeat(64), DOMAIN), Host::Other);
        assert_eq!(parse(&"a.".repeat(200), DOMAIN), Host::Other);
        assert_eq!(parse("a.b.c.d.e", DOMAIN), Host::Other);
        assert_eq!(
            parse("cluster.local", DOMAIN),
            Host::NameDotNamespace("cluster".into(), "local".into())
        );
    }

    #[test]
    fn only_pod_forms_may_be_pods() {
        for host in [
            "web-0",
            "web-0.prod",
            "web-0.prod.pod",
            "10-1-2-3.prod.pod",
            "web-0.db.prod.svc",
        ] {
            assert!(parse(host, DOMAIN).may_be_pod(), "{host}");
        }
        for host in [
            "10.1.2.3",
            "fd00::1",
            "localhost",
            "LOCALHOST.",
            "under_score",
            "a.b.c.d.e",
            "",
        ] {
            assert!(!parse(host, DOMAIN).may_be_pod(), "{host}");
        }
    }

    #[test]
    fn custom_cluster_domains() {
        let dashed = parse("10-1-2-3.ns.pod.corp.example", "corp.example");
        assert_eq!(
            dashed,
            Host::DashedIp {
                ip: "10.1.2.3".parse().unwrap(),
                namespace: "ns".into(),
                or_pod: None
            }
        );
    }

    #[test]
    fn cluster_domain_comes_from_the_search_list() {
        let conf = "search prod.svc.k8s.corp svc.k8s.corp k8s.corp\nnameserver 10.96.0.10\noptions ndots:5\n";
        assert_eq!(cluster_domain_from_resolv_conf(conf).as_deref(), Some("k8s.corp"));
        assert_eq!(cluster_domain_from_resolv_conf("nameserver 1.1.1.1\n"), None);
    }

    #[test]
    fn a_namespace_named_svc_is_not_the_cluster_domain() {
        let conf = "search svc.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";
        assert_eq!(cluster_domain_from_resolv_conf(conf).as_deref(), Some("cluster.local"));
        let conf = "search svc.svc.k8s.corp svc.k8s.corp k8s.corp corp.example\n";
        assert_eq!(cluster_domain_from_resolv_conf(conf).as_deref(), Some("k8s.corp"));
        // A node's own search domain that merely starts with `svc.` is not one.
        let conf = "search svc.example.com example.com\n";
        assert_eq!(cluster_domain_from_resolv_conf(conf), None);
    }

    #[test]
    fn ipv6_dashes_never_start_or_end_a_label() {
        let d = |ip: &str| dashed(ip.parse().unwrap());
        assert_eq!(d("10.42.2.46"), "10-42-2-46");
        assert_eq!(d("fd00::1"), "fd00--1");
        assert_eq!(d("::1"), "0-0-0-0-0-0-0-1");
        assert_eq!(d("fd00::"), "fd00-0-0-0-0-0-0-0");
        for ip in ["::1", "fd00::", "fd00::1", "10.0.0.1"] {
            assert_eq!(dashed_ip(&d(ip)), Some(ip.parse().unwrap()), "{ip}");
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

            /// Any input at all: no panic, and whatever is classified as a pod name is a
            /// valid lowercase DNS name.
            #[test]
            fn arbitrary_input_never_panics(host in ".{0,300}", domain in "[a-z.]{0,20}") {
                match parse(&host, &domain) {
                    Host::Name(n) => prop_assert!(is_label(&n)),
                    Host::NameDotNamespace(a, b) => prop_assert!(is_label(&a) && is_label(&b)),
                    Host::Pod { name, namespace } => prop_assert!(is_label(&name) && is_label(&namespace)),
                    _ => {}
                }
            }

            /// Names built from valid parts come back as the form they were built as.
            #[test]
            fn built_names_round_trip(
                name in "[a-z]([a-z0-9-]{0,20}[a-z0-9])?",
                ns in "[a-z]([a-z0-9-]{0,20}[a-z0-9])?",
                ip in any::<[u8; 4]>(),
            ) {
                // A pod name that also spells an IP keeps its name as the fallback.
                match parse(&format!("{name}.{ns}.pod"), DOMAIN) {
                    Host::Pod { name: n, namespace } => prop_assert_eq!((n, namespace), (name.clone(), ns.clone())),
                    Host::DashedIp { or_pod, namespace, .. } => {
                        prop_assert_eq!((or_pod, namespace), (Some(name.clone()), ns.clone()))
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
                let dashed = format!("{}-{}-{}-{}.{ns}.pod.{DOMAIN}", ip[0], ip[1], ip[2], ip[3]);
                prop_assert_eq!(parse(&dashed, DOMAIN), Host::DashedIp { ip: IpAddr::from(ip), namespace: ns, or_pod: None });
                prop_assert_eq!(parse(&name.to_uppercase(), DOMAIN), Host::Name(name));
            }
        }
    }
}
