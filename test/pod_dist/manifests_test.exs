defmodule PodDist.ManifestsTest do
  # examples/kubernetes, read by the real kubectl and checked field by field against the
  # Kubernetes schemas; the Deployments' pods then run in the simulator.
  use PodDist.SimCase, async: true

  @dir "examples/kubernetes"

  test "kubectl builds them and every field exists in its kind's schema" do
    {json, 0} = PodDist.Simulator.check_manifest(kustomize!(@dir))
    %{"objects" => objects, "pods" => pods} = PodDist.Test.JSON.decode!(json)

    assert Enum.sort(objects) == [
             "ConfigMap/default/shop-dist-tls",
             "Deployment/default/shop",
             "Deployment/default/shop-api",
             "Role/default/pod-dist-pod-reader",
             "RoleBinding/default/shop-pod-dist-pod-reader",
             "Secret/default/shop-dist-tls",
             "ServiceAccount/default/shop"
           ]

    assert length(pods) == 2
  end

  test "the Role grants exactly get, list and watch on pods" do
    role =
      kustomize!(@dir)
      |> String.split("\n---\n")
      |> Enum.find(&(&1 =~ "kind: Role\n"))

    assert role =~
             ~s(rules:\n- apiGroups:\n  - ""\n  resources:\n  - pods\n  verbs:\n  - get\n  - list\n  - watch)

    # One rule, nothing after `watch`: no other resource, no other verb.
    assert length(String.split(role, "- apiGroups:")) == 2
    assert String.ends_with?(String.trim(role), "- watch")
  end

  test "a misspelt field is refused with its path" do
    yaml = File.read!(Path.join(@dir, "deployment.yaml"))

    {error, 2} =
      PodDist.Simulator.check_manifest(
        String.replace(yaml, "containerPort: 4371", "containerPorts: 4371", global: false)
      )

    assert error =~ "Deployment/default/shop"
    assert error =~ ".spec.template.spec.containers[1].ports[0]"
  end

  test "the Deployments' pods run in the simulator and declare their nodes", %{sim: sim} do
    {json, 0} = PodDist.Simulator.check_manifest(kustomize!(@dir))

    # Each container tells its node the port it declares, so no API call is needed at boot.
    for pod <- PodDist.Test.JSON.decode!(json)["pods"], container <- pod["spec"]["containers"] do
      env = Map.new(container["env"], &{&1["name"], &1["value"]})

      [%{"containerPort" => port}] =
        Enum.filter(container["ports"], &(&1["name"] == "dist-#{env["RELEASE_NODE"]}"))

      assert env["POD_DIST_LISTEN_PORT"] == "#{port}", container["name"]
    end

    create_manifest_pods(sim, PodDist.Test.JSON.decode!(json)["pods"])

    {:ok, watch} =
      PodDist.Watch.start(PodDist.Simulator.watch_options(sim) ++ [label_selector: "app=shop"])

    assert PodDist.Watch.await_synced(watch, 10_000)

    declared =
      for pod <- PodDist.Watch.pods(watch),
          do: {pod.labels["role"], PodDist.Epmd.declared_nodes(pod)}

    assert Enum.sort(declared) == [
             {"api", [{~c"api", 4370}]},
             {"api-worker", [{~c"api", 4370}, {~c"worker", 4371}]}
           ]
  end
end
