"""The official Kubernetes Python client against kube_sim.

Run by tests/python_client.rs with Debian's interpreter (`/usr/bin/python3`, where
`apt-get install python3-kubernetes` puts the client) and the admin kubeconfig of a fresh
simulator whose bookmark interval is short:

    /usr/bin/python3 client_check.py KUBECONFIG

It exercises the verbs PodDist and its tests rely on, each as a check that prints one
line, and stops with a traceback at the first failure. The namespace must start empty.
"""

import datetime
import sys
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "default"
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def pod(name, labels, node=None):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            node_name=node,
            containers=[client.V1Container(name="app", image="registry.invalid/app:1")],
        ),
    )


def names(pod_list):
    return sorted(p.metadata.name for p in pod_list.items)


def api_error(call, *args, **kwargs):
    """The ApiException a call raises; fails when it succeeds."""
    try:
        call(*args, **kwargs)
    except ApiException as e:
        return e
    raise AssertionError(f"{call.__name__}{args} should have failed")


@check
def create(v1):
    for i in range(6):
        tier = "even" if i % 2 == 0 else "odd"
        created = v1.create_namespaced_pod(NS, pod(f"py-{i}", {"app": "py", "tier": tier}, node="node-1"))
        assert created.metadata.name == f"py-{i}", created.metadata
        assert created.metadata.namespace == NS, created.metadata
        assert created.metadata.uid, "the server assigns a uid"
        assert int(created.metadata.resource_version) > 0, created.metadata
        assert created.metadata.creation_timestamp is not None, created.metadata
        assert created.status.phase == "Pending", created.status
    e = api_error(v1.create_namespaced_pod, NS, pod("py-0", {"app": "py"}))
    assert e.status == 409 and "AlreadyExists" in e.body, e
    return "6 pods created; a second py-0 is 409 AlreadyExists"


@check
def get(v1):
    got = v1.read_namespaced_pod("py-1", NS)
    assert got.metadata.name == "py-1" and got.metadata.labels == {"app": "py", "tier": "odd"}, got.metadata
    assert got.spec.node_name == "node-1", got.spec
    assert got.kind == "Pod" and got.api_version == "v1", (got.kind, got.api_version)
    e = api_error(v1.read_namespaced_pod, "nope", NS)
    assert e.status == 404 and "NotFound" in e.body, e
    return "py-1 read back; a missing pod is 404 NotFound"


@check
def patch_status_strategic(v1):
    # A dict body: the client sends application/strategic-merge-patch+json.
    patched = v1.patch_namespaced_pod_status(
        "py-0",
        NS,
        {"status": {"phase": "Running", "podIP": "127.0.20.1", "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    assert patched.status.phase == "Running" and patched.status.pod_ip == "127.0.20.1", patched.status
    assert [(c.type, c.status) for c in patched.status.conditions] == [("Ready", "True")], patched.status
    # Strategic merge merges conditions by type: adding one keeps Ready.
    patched = v1.patch_namespaced_pod_status(
        "py-0", NS, {"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}
    )
    assert sorted((c.type, c.status) for c in patched.status.conditions) == [
        ("PodScheduled", "True"),
        ("Ready", "True"),
    ], patched.status.conditions
    # The status subresource changes status only.
    patched = v1.patch_namespaced_pod_status("py-0", NS, {"spec": {"nodeName": "elsewhere"}})
    assert patched.spec.node_name == "node-1", patched.spec
    read = v1.read_namespaced_pod("py-0", NS)
    assert read.status.pod_ip == "127.0.20.1" and read.status.phase == "Running", read.status
    return "py-0 Running with podIP and Ready (strategic merge keeps conditions by type)"


@check
def patch_status_json_patch(v1):
    # A list body: the client sends application/json-patch+json.
    patched = v1.patch_namespaced_pod_status(
        "py-1",
        NS,
        [
            {"op": "test", "path": "/status/phase", "value": "Pending"},
            {"op": "replace", "path": "/status/phase", "value": "Running"},
            {"op": "add", "path": "/status/podIP", "value": "127.0.20.2"},
            {"op": "add", "path": "/status/conditions", "value": [{"type": "Ready", "status": "True"}]},
        ],
    )
    assert patched.status.phase == "Running" and patched.status.pod_ip == "127.0.20.2", patched.status
    assert [(c.type, c.status) for c in patched.status.conditions] == [("Ready", "True")], patched.status
    rv = patched.metadata.resource_version
    # A failed test (the JSON patch way to say "only if") is the API server's generic 422
    # and changes nothing.
    e = api_error(
        v1.patch_namespaced_pod_status,
        "py-1",
        NS,
        [
            {"op": "replace", "path": "/status/podIP", "value": "127.0.20.99"},
            {"op": "test", "path": "/status/phase", "value": "Pending"},
        ],
    )
    assert e.status == 422 and "Invalid" in e.body, e
    e = api_error(v1.patch_namespaced_pod_status, "py-1", NS, [{"op": "remove", "path": "/status/hostIP"}])
    assert e.status == 422, e
    # A resourceVersion set by the patch is a precondition.
    stale = str(int(rv) - 1)
    e = api_error(
        v1.patch_namespaced_pod_status,
        "py-1",
        NS,
        [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": stale},
            {"op": "replace", "path": "/status/podIP", "value": "127.0.20.98"},
        ],
    )
    assert e.status == 409 and "Conflict" in e.body, e
    read = v1.read_namespaced_pod("py-1", NS)
    assert read.status.pod_ip == "127.0.20.2" and read.metadata.resource_version == rv, read
    return "py-1 Running by JSON patch; a failed test is 422, a stale resourceVersion 409, neither changes it"


@check
def list_selectors(v1):
    assert names(v1.list_namespaced_pod(NS, label_selector="app=py")) == [f"py-{i}" for i in range(6)]
    assert names(v1.list_namespaced_pod(NS, label_selector="app=py,tier=even")) == ["py-0", "py-2", "py-4"]
    assert names(v1.list_namespaced_pod(NS, label_selector="tier in (odd),app")) == ["py-1", "py-3", "py-5"]
    assert names(v1.list_namespaced_pod(NS, label_selector="app!=py")) == []
    assert names(v1.list_namespaced_pod(NS, field_selector="status.phase=Running")) == ["py-0", "py-1"]
    assert names(v1.list_namespaced_pod(NS, field_selector="metadata.name=py-3")) == ["py-3"]
    assert names(v1.list_namespaced_pod(NS, field_selector="status.phase!=Running,spec.nodeName=node-1")) == [
        "py-2",
        "py-3",
        "py-4",
        "py-5",
    ]
    both = v1.list_namespaced_pod(NS, label_selector="tier=even", field_selector="status.phase=Running")
    assert names(both) == ["py-0"], names(both)
    everywhere = v1.list_pod_for_all_namespaces(label_selector="app=py", field_selector="metadata.namespace=default")
    assert len(everywhere.items) == 6, names(everywhere)
    e = api_error(v1.list_namespaced_pod, NS, field_selector="spec.unknownField=x")
    assert e.status == 400, e
    return "label, field and combined selectors; an unknown field is 400"


@check
def paging(v1):
    for i in range(23):
        v1.create_namespaced_pod(NS, pod(f"page-{i:02}", {"app": "page"}))
    seen, pages, token, rv = [], 0, None, None
    while True:
        kwargs = {"_continue": token} if token else {}
        page = v1.list_namespaced_pod(NS, label_selector="app=page", limit=5, **kwargs)
        pages += 1
        assert len(page.items) <= 5, len(page.items)
        seen += [p.metadata.name for p in page.items]
        if rv is None:
            rv = page.metadata.resource_version
            # Created after the first page: a continued list is a snapshot, so it never shows.
            v1.create_namespaced_pod(NS, pod("page-late", {"app": "page"}))
        else:
            assert page.metadata.resource_version == rv, "every page is the same snapshot"
        token = page.metadata._continue
        if not token:
            break
        assert pages < 20, "paging does not end"
    assert pages == 5, pages
    assert len(seen) == len(set(seen)), f"a pod came twice: {seen}"
    assert sorted(seen) == [f"page-{i:02}" for i in range(23)], seen
    return f"23 pods in {pages} pages of 5, each once, one snapshot"


@check
def watch_from_resource_version(v1):
    start = v1.list_namespaced_pod(NS, label_selector="app=watched").metadata.resource_version
    v1.create_namespaced_pod(NS, pod("w-1", {"app": "watched"}))
    v1.patch_namespaced_pod_status("w-1", NS, {"status": {"phase": "Running", "podIP": "127.0.20.50"}})
    v1.create_namespaced_pod(NS, pod("unwatched", {"app": "other"}))
    v1.delete_namespaced_pod("w-1", NS)  # unscheduled: gone at once

    w = watch.Watch()
    events, bookmarks = [], []
    for event in w.stream(
        v1.list_namespaced_pod,
        NS,
        label_selector="app=watched",
        resource_version=start,
        allow_watch_bookmarks=True,
        timeout_seconds=10,
        _request_timeout=30,
    ):
        if event["type"] == "BOOKMARK":
            bookmarks.append(event["raw_object"])
        else:
            events.append((event["type"], event["object"].metadata.name, event["object"]))
        if bookmarks and len(events) >= 3:
            w.stop()
    kinds = [(kind, name) for kind, name, _ in events]
    assert kinds == [("ADDED", "w-1"), ("MODIFIED", "w-1"), ("DELETED", "w-1")], kinds
    assert events[1][2].status.phase == "Running" and events[1][2].status.pod_ip == "127.0.20.50", events[1][2].status
    versions = [int(obj.metadata.resource_version) for _, _, obj in events]
    assert int(start) < versions[0] < versions[1] < versions[2], (start, versions)
    assert bookmarks, "no BOOKMARK within the watch's 10 s"
    assert bookmarks[-1]["kind"] == "Pod", bookmarks[-1]
    assert int(bookmarks[-1]["metadata"]["resourceVersion"]) >= versions[0], bookmarks[-1]
    return f"ADDED, MODIFIED, DELETED after resourceVersion {start}, and {len(bookmarks)} BOOKMARK(s)"


@check
def graceful_delete(v1):
    before = datetime.datetime.now(datetime.timezone.utc)
    deleted = v1.delete_namespaced_pod("py-2", NS, grace_period_seconds=30)
    assert deleted.metadata.name == "py-2" and deleted.metadata.deletion_grace_period_seconds == 30, deleted.metadata
    wait = (deleted.metadata.deletion_timestamp - before).total_seconds()
    assert 25 <= wait <= 35, f"deletionTimestamp is {wait:.1f} s away, not about 30"
    still = v1.read_namespaced_pod("py-2", NS)
    assert still.metadata.deletion_timestamp is not None, still.metadata
    assert names(v1.list_namespaced_pod(NS, field_selector="metadata.name=py-2")) == ["py-2"]
    # Forcing it (grace 0) removes it at once.
    v1.delete_namespaced_pod("py-2", NS, grace_period_seconds=0)
    assert api_error(v1.read_namespaced_pod, "py-2", NS).status == 404

    # A DeleteOptions body wins over the query, as on a real server.
    deleted = v1.delete_namespaced_pod(
        "py-4", NS, body=client.V1DeleteOptions(grace_period_seconds=40), grace_period_seconds=5
    )
    assert deleted.metadata.deletion_grace_period_seconds == 40, deleted.metadata

    # A short grace period ends by itself.
    v1.delete_namespaced_pod("py-3", NS, grace_period_seconds=1)
    assert v1.read_namespaced_pod("py-3", NS).metadata.deletion_timestamp is not None
    deadline = time.monotonic() + 15
    while True:
        try:
            v1.read_namespaced_pod("py-3", NS)
        except ApiException as e:
            assert e.status == 404, e
            break
        assert time.monotonic() < deadline, "py-3 outlived its 1 s grace period by 15 s"
        time.sleep(0.2)
    return "grace 30 keeps the pod terminating until forced; the body's grace wins; grace 1 ends by itself"


def main():
    config.load_kube_config(config_file=sys.argv[1])
    v1 = client.CoreV1Api()
    for fn in CHECKS:
        print(f"ok {fn.__name__}: {fn(v1)}", flush=True)
    print(f"all {len(CHECKS)} checks passed", flush=True)


if __name__ == "__main__":
    main()
