defmodule PodDist.ResolveTest do
  use PodDist.SimCase, async: true

  alias PodDist.{Simulator, Watch}

  defp watch(sim, opts \\ []) do
    {:ok, watch} = Watch.start(Keyword.merge(Simulator.watch_options(sim), opts))
    assert Watch.await_synced(watch, 10_000)
    watch
  end

  test "every Kubernetes host form resolves to the pod's IP", %{sim: sim} do
    create_pod(sim, "prod", "web-0", hostname: "web-0", subdomain: "db")
    set_running(sim, "prod", "web-0", ["198.51.100.46", "fd00::2e"])
    watch = watch(sim, namespaces: ["prod"], cluster_domain: "k8s.example")
    ip = {198, 51, 100, 46}

    for host <- [
          "web-0",
          ~c"web-0",
          :"web-0",
          "web-0.prod",
          "web-0.prod.pod",
          "web-0.prod.pod.k8s.example",
          "198-51-100-46.prod.pod",
          "198-51-100-46.prod.pod.k8s.example",
          "web-0.db.prod.svc.k8s.example",
          "web-0.db.prod.svc",
          "web-0.db.prod",
          "web-0.db",
          "198.51.100.46"
        ] do
      assert Watch.resolve(watch, host) == {:ok, ip}, "#{host}"
    end

    assert {:ok, {0xFD00, 0, 0, 0, 0, 0, 0, 0x2E}} =
             Watch.resolve(watch, "fd00--2e.prod.pod.k8s.example", :inet6)

    assert {:ok, ^ip, %{name: "web-0", ready: true, terminating: false}} =
             Watch.lookup(watch, "web-0")

    assert {:ok, {192, 0, 2, 99}, nil} = Watch.lookup(watch, "192.0.2.99")

    for host <- [
          "web-1",
          "web-0.staging",
          "web-0.db.prod.svc.cluster.local",
          "example.com",
          "",
          "bad_name"
        ] do
      assert Watch.resolve(watch, host) == :error, "#{host}"
    end
  end

  test "a bare name resolves only in the node's own namespace", %{sim: sim} do
    for {ns, ip} <- [{"prod", "198.51.100.1"}, {"staging", "198.51.100.2"}] do
      create_pod(sim, ns, "api-0", ip: ip)
    end

    from_prod = watch(sim, namespaces: ["prod", "staging"])
    assert Watch.resolve(from_prod, "api-0") == {:ok, {198, 51, 100, 1}}
    assert Watch.resolve(from_prod, "api-0.staging") == {:ok, {198, 51, 100, 2}}

    assert Watch.resolve(watch(sim, namespaces: ["staging", "prod"]), "api-0") ==
             {:ok, {198, 51, 100, 2}}

    # prod's api-0 being recreated: DNS from prod would not answer with staging's pod.
    tag = Watch.subscribe(from_prod)
    delete_pod(sim, "prod", "api-0")
    assert {:deleted, %{name: "api-0"}} = next_event(tag)
    assert Watch.resolve(from_prod, "api-0") == :error

    # Watching every namespace: the credentials' own is home (here `default`).
    everywhere = watch(sim, namespaces: :all)
    assert Watch.resolve(everywhere, "api-0") == :error
    assert Watch.resolve(everywhere, "api-0.staging") == {:ok, {198, 51, 100, 2}}
  end

  test "a hostname of another namespace is no impostor", %{sim: sim} do
    create_pod(sim, "other", "evil", hostname: "web-0", subdomain: "web", ip: "198.51.100.66")
    watch = watch(sim, namespaces: ["prod", "other"])

    for host <- ["web-0.web", "web-0", "web-0.web.prod", "web-0.web.prod.svc.cluster.local"] do
      assert Watch.resolve(watch, host) == :error, host
    end

    assert Watch.resolve(watch, "web-0.web.other.svc") == {:ok, {198, 51, 100, 66}}
  end

  test "a dashed IP name is only the pod of that namespace owning the IP", %{sim: sim} do
    create_pod(sim, "prod", "198-51-100-9", ip: "198.51.100.50")
    watch = watch(sim, namespaces: ["prod"])
    assert Watch.resolve(watch, "198-51-100-9.prod.pod") == :error
    assert Watch.resolve(watch, "198-51-100-9") == {:ok, {198, 51, 100, 50}}
    assert Watch.resolve(watch, "198-51-100-50.prod.pod") == {:ok, {198, 51, 100, 50}}
  end

  test "an evicted pod keeping its IP never answers for the live pod that got it", %{sim: sim} do
    create_pod(sim, "prod", "z-old", ip: "198.51.100.7")
    evict(sim, "prod", "z-old")
    create_pod(sim, "prod", "a-new", ip: "198.51.100.7")

    assert [%{"status" => %{"phase" => "Failed", "podIP" => "198.51.100.7"}}] =
             Enum.filter(server_pods(sim, "prod"), &(&1["metadata"]["name"] == "z-old"))

    # The list comes in alphabetical order: a-new first, the evicted z-old last.
    watch = watch(sim, namespaces: ["prod"])
    assert Watch.resolve(watch, "a-new") == {:ok, {198, 51, 100, 7}}
    assert Watch.resolve(watch, "z-old") == :error
    assert {:ok, _, %{name: "a-new"}} = Watch.lookup(watch, "198.51.100.7")

    # Once no live pod holds it, the dead pod answers to its name, never to its IP.
    tag = Watch.subscribe(watch)
    delete_pod(sim, "prod", "a-new")
    assert {:deleted, %{name: "a-new"}} = next_event(tag)
    assert Watch.resolve(watch, "z-old") == {:ok, {198, 51, 100, 7}}
    assert {:ok, {198, 51, 100, 7}, nil} = Watch.lookup(watch, "198.51.100.7")
    assert Watch.resolve(watch, "198-51-100-7.prod.pod") == :error
  end

  test "hostNetwork pods share their node's IP: each resolves by name, none by IP",
       %{sim: sim} do
    for name <- ["agent-a", "agent-b"],
        do: create_pod(sim, "prod", name, host_network: true, ip: "198.51.100.200")

    watch = watch(sim, namespaces: ["prod"])
    assert Watch.resolve(watch, "agent-a") == {:ok, {198, 51, 100, 200}}
    assert Watch.resolve(watch, "agent-b") == {:ok, {198, 51, 100, 200}}
    assert {:ok, _, nil} = Watch.lookup(watch, "198.51.100.200")
  end

  test "dual stack: each family answers from its own address", %{sim: sim} do
    create_pod(sim, "prod", "dual", ip: ["198.51.100.46", "fd00::2e"])
    create_pod(sim, "prod", "v6-first", ip: ["fd00::3", "198.51.100.3"])
    create_pod(sim, "prod", "v4-only", ip: "198.51.100.4")
    watch = watch(sim, namespaces: ["prod"])
    v6 = fn last -> {0xFD00, 0, 0, 0, 0, 0, 0, last} end

    assert Watch.resolve(watch, "dual") == {:ok, {198, 51, 100, 46}}
    assert Watch.resolve(watch, "dual", :inet) == {:ok, {198, 51, 100, 46}}
    assert Watch.resolve(watch, "dual", :inet6) == {:ok, v6.(0x2E)}
    assert Watch.resolve(watch, "v6-first", :inet) == {:ok, {198, 51, 100, 3}}
    assert Watch.resolve(watch, "v6-first", :inet6) == {:ok, v6.(3)}
    assert Watch.resolve(watch, "v4-only", :inet6) == :error
    assert {:ok, _, %{name: "dual"}} = Watch.lookup(watch, "fd00::2e", :inet6)
    assert Watch.resolve(watch, "fd00::2e", :inet) == :error
  end

  test "a deleted pod stops resolving and a reused IP never answers for the old name", %{sim: sim} do
    create_pod(sim, "default", "old", ip: "198.51.100.7", grace: 30)
    watch = watch(sim)
    tag = Watch.subscribe(watch)

    {:ok, 200, _} = api(sim, :delete, "/api/v1/namespaces/default/pods/old")
    assert {:changed, _, %{terminating: true}} = next_event(tag)
    assert {:ok, _, %{terminating: true}} = Watch.lookup(watch, "old"), "terminating pods drain"

    create_pod(sim, "default", "new", labels: [app: "other"], ip: "198.51.100.7")
    assert {:added, %{name: "new"}} = next_event(tag)
    assert {:changed, _, %{name: "new", ip: {198, 51, 100, 7}}} = next_event(tag)
    assert Watch.resolve(watch, "old") == :error
    assert {:ok, _, %{name: "new"}} = Watch.lookup(watch, "198-51-100-7.default.pod")

    delete_pod(sim, "default", "new")
    assert {:deleted, %{name: "new"}} = next_event(tag)
    assert Watch.resolve(watch, "new") == :error
  end

  test "selectors limit what is indexed; a pod relabelled out is deleted", %{sim: sim} do
    create_pod(sim, "default", "api-1", labels: [app: "api"], ip: "198.51.100.1")
    create_pod(sim, "default", "db-1", labels: [app: "db"], ip: "198.51.100.2")
    watch = watch(sim, label_selector: "app=api")
    assert Enum.map(Watch.pods(watch), & &1.name) == ["api-1"]
    assert Watch.resolve(watch, "db-1") == :error

    tag = Watch.subscribe(watch)
    patch_pod(sim, "default", "api-1", %{metadata: %{labels: %{app: "retired"}}})
    assert {:deleted, %{name: "api-1"}} = next_event(tag)
    assert Watch.pods(watch) == []

    running = watch(sim, field_selector: "status.phase=Running,metadata.name!=db-1")
    assert Enum.map(Watch.pods(running), & &1.name) == ["api-1"]
  end
end
