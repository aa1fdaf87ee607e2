defmodule PodDist.ManifestsSlicesTest do
  # examples/kubernetes-slices: the example cluster fed by the EndpointSlices of a
  # headless Service, whose Role grants nothing on pods. Built and applied by the real
  # kubectl to the simulator; the nodes' ports then come from the slices.
  use PodDist.SimCase, async: true

  @dir "examples/kubernetes-slices"

  test "every field exists in its kind's schema; no Role reads pods" do
    {json, 0} = PodDist.Simulator.check_manifest(kustomize!(@dir))
    %{"objects" => objects} = PodDist.Test.JSON.decode!(json)

    assert Enum.sort(objects) == [
             "ConfigMap/default/shop-dist-tls",
             "Deployment/default/shop",
             "Deployment/default/shop-api",
             "Role/default/pod-dist-slice-reader",
             "RoleBinding/default/shop-pod-dist-slice-reader",
             "Secret/default/shop-dist-tls",
             "Service/default/shop-dist",
             "ServiceAccount/default/shop"
           ]

    [role] =
      kustomize!(@dir) |> String.split("\n---\n") |> Enum.filter(&(&1 =~ ~r/^kind: Role$/m))

    assert role =~
             "rules:\n- apiGroups:\n  - discovery.k8s.io\n  resources:\n  - endpointslices\n  verbs:\n  - get\n  - list\n  - watch"

    assert length(String.split(role, "- apiGroups:")) == 2
    assert String.ends_with?(String.trim(role), "- watch")
    refute kustomize!(@dir) =~ "POD_DIST_LABEL_SELECTOR"
  end

  test "kubectl applies it; the pods' nodes and ports come from the slices", %{sim: sim} do
    kubeconfig = Path.join(sim.dir, "kubeconfig")
    args = ["--kubeconfig", kubeconfig, "--cache-dir", Path.join(sim.dir, "kubectl")]
    {out, 0} = System.cmd("kubectl", args ++ ["apply", "-k", @dir], stderr_to_stdout: true)
    assert out =~ "service/shop-dist created"
    assert out =~ "role.rbac.authorization.k8s.io/pod-dist-slice-reader created"

    # The simulator's service account gets what the Role grants: slices, no pods.
    {:ok, 200, _} =
      PodDist.Simulator.fault(sim, "rbac",
        namespaces: "*",
        resources: "endpointslices.discovery.k8s.io"
      )

    {json, 0} = PodDist.Simulator.check_manifest(kustomize!(@dir))

    create_manifest_pods(sim, PodDist.Test.JSON.decode!(json)["pods"])

    env =
      for pod <- PodDist.Test.JSON.decode!(json)["pods"],
          container <- pod["spec"]["containers"],
          var <- container["env"],
          var["name"] == "POD_DIST_SERVICE",
          uniq: true,
          do: var["value"]

    assert env == ["shop-dist"]

    {:ok, watch} =
      PodDist.Watch.start(PodDist.Simulator.watch_options(sim) ++ [service: "shop-dist"])

    assert PodDist.Watch.await_synced(watch, 10_000)

    declared =
      eventually(fn ->
        pods = PodDist.Watch.pods(watch)
        length(pods) == 2 && Enum.map(pods, &PodDist.Epmd.declared_nodes/1)
      end)

    assert Enum.sort(declared) == [[{~c"api", 4370}], [{~c"api", 4370}, {~c"worker", 4371}]]
    assert PodDist.Watch.health(watch).errors == 0
  end
end
