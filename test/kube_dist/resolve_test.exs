defmodule KubeDist.ResolveTest do
  use KubeDist.SimCase, async: true

  alias KubeDist.{Simulator, Watch}

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
             Watch.resolve(watch, "fd00--2e.prod.pod.k8s.example")

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

  test "a name in two namespaces resolves in the first watched, else is ambiguous", %{sim: sim} do
    for {ns, ip} <- [{"prod", "198.51.100.1"}, {"staging", "198.51.100.2"}] do
      create_pod(sim, ns, "api-0", ip: ip)
    end

    assert Watch.resolve(watch(sim, namespaces: ["prod", "staging"]), "api-0") ==
             {:ok, {198, 51, 100, 1}}

    assert Watch.resolve(watch(sim, namespaces: ["staging", "prod"]), "api-0") ==
             {:ok, {198, 51, 100, 2}}

    everywhere = watch(sim, namespaces: :all)
    assert Watch.resolve(everywhere, "api-0") == {:error, :ambiguous}
    assert Watch.resolve(everywhere, "api-0.staging") == {:ok, {198, 51, 100, 2}}
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
