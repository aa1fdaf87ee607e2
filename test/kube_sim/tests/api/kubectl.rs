//! The real kubectl against the simulator: if kubectl accepts it, its wire format,
//! discovery, Tables, selectors, patches and watches are what a real server sends.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kube_sim::{fixtures, Config, Simulator};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Kubectl {
    sim: Simulator,
    dir: tempfile::TempDir,
}

impl Kubectl {
    async fn start() -> Kubectl {
        let sim = Simulator::start(Config::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        sim.write_kubeconfig(&dir.path().join("kubeconfig"), true).unwrap();
        Kubectl { sim, dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl and returns its standard output; panics with its stderr on failure.
    async fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().await.expect("kubectl runs");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(output.status.success(), "kubectl {args:?} failed: {stderr}\n{stdout}");
        stdout.into_owned()
    }

    async fn fail(&self, args: &[&str]) -> String {
        let output = self.command(args).output().await.expect("kubectl runs");
        assert!(!output.status.success(), "kubectl {args:?} should have failed");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn add(&self, name: &str, ip: &str, labels: &[(&str, &str)]) {
        let pod = fixtures::with_labels(fixtures::ready_pod(name, ip), labels);
        self.sim.create_pod("default", pod).unwrap();
    }
}

fn names(json: &str) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_str(json).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn get_pods_prints_the_server_table() {
    let k = Kubectl::start().await;
    k.add("web-1", "127.0.10.1", &[("app", "web")]);
    k.sim.create_pod("default", fixtures::pod("pending-1")).unwrap();
    let out = k.run(&["get", "pods"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pending-1") && l.contains("Pending")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("web-1") && l.contains("Running")),
        "{out}"
    );

    let wide = k.run(&["get", "pods", "-o", "wide"]).await;
    assert!(
        wide.lines()
            .any(|l| l.starts_with("web-1") && l.contains("127.0.10.1") && l.contains("node-1")),
        "{wide}"
    );
}

#[tokio::test]
async fn get_pods_as_json_and_single_pod() {
    let k = Kubectl::start().await;
    k.add("a", "127.0.10.1", &[]);
    k.add("b", "127.0.10.2", &[]);
    assert_eq!(names(&k.run(&["get", "pods", "-o", "json"]).await), ["a", "b"]);
    let one: serde_json::Value = serde_json::from_str(&k.run(&["get", "pod", "b", "-o", "json"]).await).unwrap();
    assert_eq!(one["status"]["podIP"], "127.0.10.2");
    assert_eq!(one["kind"], "Pod");
    let err = k.fail(&["get", "pod", "nope"]).await;
    assert!(err.contains("pods \"nope\" not found"), "{err}");
    let jsonpath = k
        .run(&[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.status.podIP}{\"\\n\"}{end}",
        ])
        .await;
    assert_eq!(jsonpath.lines().collect::<Vec<_>>(), ["127.0.10.1", "127.0.10.2"]);
}

#[tokio::test]
async fn label_and_field_selectors() {
    let k = Kubectl::start().await;
    k.add("api-1", "127.0.10.1", &[("app", "api"), ("tier", "front")]);
    k.add("api-2", "127.0.10.2", &[("app", "api"), ("canary", "true")]);
    k.add("worker-1", "127.0.10.3", &[("app", "worker"), ("tier", "back")]);
    k.sim.create_pod("default", fixtures::pod("pending")).unwrap();
    let get = |sel: &'static [&'static str]| {
        let mut args = vec!["get", "pods", "-o", "json"];
        args.extend_from_slice(sel);
        args
    };
    assert_eq!(names(&k.run(&get(&["-l", "app=api"])).await), ["api-1", "api-2"]);
    assert_eq!(names(&k.run(&get(&["-l", "app!=api"])).await), ["pending", "worker-1"]);
    assert_eq!(
        names(&k.run(&get(&["-l", "tier in (front,back)"])).await),
        ["api-1", "worker-1"]
    );
    assert_eq!(
        names(&k.run(&get(&["-l", "tier notin (front)"])).await),
        ["api-2", "pending", "worker-1"]
    );
    assert_eq!(names(&k.run(&get(&["-l", "canary"])).await), ["api-2"]);
    assert_eq!(names(&k.run(&get(&["-l", "app,!canary"])).await), ["api-1", "worker-1"]);
    assert_eq!(
        names(&k.run(&get(&["--field-selector", "status.phase=Pending"])).await),
        ["pending"]
    );
    assert_eq!(
        names(&k.run(&get(&["--field-selector", "metadata.name=api-2"])).await),
        ["api-2"]
    );
    assert_eq!(
        names(
            &k.run(&get(&[
                "--field-selector",
                "spec.nodeName=node-1,status.phase!=Pending"
            ]))
            .await
        ),
        ["api-1", "api-2", "worker-1"]
    );
    let err = k.fail(&get(&["--field-selector", "spec.bogus=x"])).await;
    assert!(err.contains("field label not supported: spec.bogus"), "{err}");
    assert_eq!(
        names(&k.run(&["get", "pods", "-A", "-o", "json", "-l", "app=worker"]).await),
        ["worker-1"]
    );
}

#[tokio::test]
async fn create_patch_status_and_delete() {
    let k = Kubectl::start().await;
    let manifest = k.file(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: made-by-kubectl\n  labels:\n    app: demo\nspec:\n  nodeName: node-2\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: demo:1\n    ports:\n    - name: dist-app\n      containerPort: 9100\n",
    );
    let out = k.run(&["create", "-f", manifest.to_str().unwrap()]).await;
    assert_eq!(out.trim(), "pod/made-by-kubectl created");
    let err = k.fail(&["create", "-f", manifest.to_str().unwrap()]).await;
    assert!(err.contains("already exists"), "{err}");

    let patch = r#"{"status":{"phase":"Running","podIP":"127.0.20.1","podIPs":[{"ip":"127.0.20.1"}],"conditions":[{"type":"Ready","status":"True"}]}}"#;
    let out = k
        .run(&["patch", "pod", "made-by-kubectl", "--subresource=status", "-p", patch])
        .await;
    assert_eq!(out.trim(), "pod/made-by-kubectl patched");
    let pod = k.sim.shared().store.get("default", "made-by-kubectl").unwrap();
    assert_eq!(pod.status.as_ref().unwrap().pod_ip.as_deref(), Some("127.0.20.1"));

    // A merge patch to the main resource changes labels, not status.
    let out = k
        .run(&[
            "patch",
            "pod",
            "made-by-kubectl",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"version":"2"}},"status":{"podIP":"1.2.3.4"}}"#,
        ])
        .await;
    assert_eq!(out.trim(), "pod/made-by-kubectl patched");
    let pod = k.sim.shared().store.get("default", "made-by-kubectl").unwrap();
    assert_eq!(pod.metadata.labels.as_ref().unwrap()["version"], "2");
    assert_eq!(pod.status.as_ref().unwrap().pod_ip.as_deref(), Some("127.0.20.1"));

    let out = k.run(&["delete", "pod", "made-by-kubectl"]).await;
    assert_eq!(out.trim(), "pod \"made-by-kubectl\" deleted");
    assert_eq!(
        k.sim.shared().store.get("default", "made-by-kubectl").unwrap_err().code,
        404
    );
}

#[tokio::test]
async fn watch_sees_added_modified_deleted() {
    let k = Kubectl::start().await;
    k.add("before", "127.0.10.1", &[]);
    let mut child = k
        .command(&["get", "pods", "--watch", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("kubectl printed in time")
            .unwrap()
            .unwrap()
    };
    let header = next().await;
    assert_eq!(header.split_whitespace().next(), Some("EVENT"), "{header}");
    let first = next().await;
    assert!(first.starts_with("ADDED") && first.contains("before"), "{first}");

    k.sim.create_pod("default", fixtures::pod("later")).unwrap();
    let added = next().await;
    assert!(
        added.starts_with("ADDED") && added.contains("later") && added.contains("Pending"),
        "{added}"
    );
    k.sim
        .set_status("default", "later", |s| fixtures::running(s, &["127.0.10.2"], true))
        .unwrap();
    let modified = next().await;
    assert!(
        modified.starts_with("MODIFIED") && modified.contains("later") && modified.contains("Running"),
        "{modified}"
    );
    k.sim.delete_pod("default", "later", Some(0)).unwrap();
    let deleted = next().await;
    assert!(deleted.starts_with("DELETED") && deleted.contains("later"), "{deleted}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn kubectl_reports_auth_failures() {
    let k = Kubectl::start().await;
    k.sim.write_kubeconfig(&k.dir.path().join("kubeconfig"), false).unwrap();
    k.sim
        .shared()
        .auth
        .restrict_service_account(Some(["prod".to_string()].into()));
    let err = k.fail(&["get", "pods"]).await;
    assert!(
        err.contains("pods is forbidden: User \"system:serviceaccount:default:pod-dist\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    k.sim.rotate_token();
    let err = k.fail(&["get", "pods"]).await;
    assert!(
        err.contains("Unauthorized") || err.contains("must be logged in"),
        "{err}"
    );
}

#[tokio::test]
async fn kubectl_applies_the_example_manifests() {
    let k = Kubectl::start().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/kubernetes");
    let kinds = [
        "serviceaccount/shop",
        "role.rbac.authorization.k8s.io/pod-dist-pod-reader",
        "rolebinding.rbac.authorization.k8s.io/shop-pod-dist-pod-reader",
        "configmap/shop-dist-tls",
        "secret/shop-dist-tls",
        "deployment.apps/shop",
        "deployment.apps/shop-api",
    ];
    let said = |out: &str, what: &str| {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines, kinds.map(|k| format!("{k} {what}")), "{out}");
    };

    // The check the issue asks for: a client-side dry run, which stores nothing.
    said(
        &k.run(&["apply", "--dry-run=client", "-k", dir]).await,
        "created (dry run)",
    );
    assert!(names(&k.run(&["get", "deployments", "-o", "json"]).await).is_empty());

    said(&k.run(&["apply", "-k", dir]).await, "created");
    let deployments = names(&k.run(&["get", "deployments", "-o", "json"]).await);
    assert_eq!(deployments, ["shop", "shop-api"]);
    said(&k.run(&["apply", "-k", dir]).await, "unchanged");

    // The server validates strictly, as kube-apiserver does for kubectl.
    let typo = std::fs::read_to_string(format!("{dir}/deployment.yaml"))
        .unwrap()
        .replacen("containerPort:", "containerport:", 1)
        .replace("name: shop\n", "name: shop-typo\n");
    let err = k
        .fail(&["create", "-f", k.file("typo.yaml", &typo).to_str().unwrap()])
        .await;
    assert!(err.contains("strict decoding error"), "{err}");
    assert!(err.contains(".spec.template.spec.containers[0].ports[0]"), "{err}");

    // The pods' service account may read pods and nothing else.
    k.sim.write_kubeconfig(&k.dir.path().join("kubeconfig"), false).unwrap();
    let err = k.fail(&["get", "deployments"]).await;
    assert!(
        err.contains("deployments.apps is forbidden: User \"system:serviceaccount:default:pod-dist\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"default\""),
        "{err}"
    );
    k.sim.write_kubeconfig(&k.dir.path().join("kubeconfig"), true).unwrap();
    k.run(&["delete", "-k", dir]).await;
    assert!(names(&k.run(&["get", "deployments", "-o", "json"]).await).is_empty());
}

#[tokio::test]
async fn apply_a_headless_service_and_get_its_endpointslices() {
    let k = Kubectl::start().await;
    let manifest = k.file(
        "service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: shop-dist\n  labels:\n    app: shop\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector:\n    app: shop\n  ports:\n  - name: dist-shop\n    port: 4370\n    targetPort: dist-shop\n",
    );
    let applied = k.run(&["apply", "-f", manifest.to_str().unwrap()]).await;
    assert!(applied.contains("service/shop-dist created"), "{applied}");
    let services = k.run(&["get", "services"]).await;
    assert!(
        services.contains("shop-dist") && services.contains("None"),
        "{services}"
    );

    for (i, name) in ["shop-0", "shop-1"].iter().enumerate() {
        let pod = fixtures::with_port(
            fixtures::with_labels(fixtures::pod(name), &[("app", "shop")]),
            "dist-shop",
            4370,
        );
        k.sim.create_pod("default", pod).unwrap();
        let ip = format!("10.2.0.{}", i + 1);
        k.sim
            .set_status("default", name, |s| fixtures::running(s, &[&ip], true))
            .unwrap();
    }
    let table = loop {
        let table = k.run(&["get", "endpointslices"]).await;
        if table.contains("10.2.0.1,10.2.0.2") {
            break table;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("shop-dist-"))
        .expect("a slice row");
    assert!(row.contains("IPv4") && row.contains("4370"), "{table}");

    let json = k
        .run(&[
            "get",
            "endpointslices.discovery.k8s.io",
            "-l",
            "kubernetes.io/service-name=shop-dist",
            "-o",
            "json",
        ])
        .await;
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    let slice = &list["items"][0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["ports"][0]["name"], "dist-shop");
    assert_eq!(slice["endpoints"][0]["targetRef"]["name"], "shop-0");
    assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);
    let none = k
        .run(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=other",
            "-o",
            "name",
        ])
        .await;
    assert!(none.trim().is_empty(), "{none}");
}
