defmodule PodDist.StrategyNetnsTest do
  # PodDist.Strategy in real nodes, one per pod namespace (two in one pod): the mesh
  # forms by itself and follows the pods. Needs root.
  use ExUnit.Case, async: false

  import PodDist.SimCase, only: [eventually: 1, set_running: 5, fault!: 3, fault!: 2]

  alias PodDist.Test.{Cluster, Node}

  @moduletag :netns

  defp mesh?(nodes) do
    names = Enum.map(nodes, & &1.name)
    Enum.all?(nodes, fn n -> Cluster.connected(n) == Enum.sort(names -- [n.name]) end)
  end

  test "api and worker nodes form a full mesh, follow scale-up, deletion and readiness" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b", "pod-c"], do: Cluster.add_pod!(cluster, pod)

    nodes = [
      Cluster.start_node!(cluster, "api", "pod-a"),
      Cluster.start_node!(cluster, "api", "pod-b"),
      Cluster.start_node!(cluster, "worker", "pod-c"),
      Cluster.start_node!(cluster, "api", "pod-c")
    ]

    for node <- nodes, do: Cluster.start_strategy!(cluster, node)
    eventually(fn -> mesh?(nodes) end)

    # Scale up: a new pod that is not Ready yet is left alone until it is.
    Cluster.add_pod!(cluster, "pod-d", ready: false)
    late = Cluster.start_node!(cluster, "worker", "pod-d")
    Cluster.start_strategy!(cluster, late)
    Process.sleep(1_500)
    assert Cluster.connected(late) == []
    refute Enum.any?(nodes, &(late.name in Cluster.connected(&1)))

    set_running(cluster.sim, "default", "pod-d", Cluster.pod_ip(cluster, "pod-d"), true)
    eventually(fn -> mesh?([late | nodes]) end)

    # Deleting a pod (gracefully: it is terminating) disconnects its nodes everywhere;
    # they are not connected back.
    [_, gone | rest] = nodes
    PodDist.SimCase.delete_pod(cluster.sim, "default", "pod-b", 30)
    eventually(fn -> Enum.all?([late | rest], &(gone.name not in Cluster.connected(&1))) end)
    Process.sleep(1_200)
    assert Enum.all?([late | rest], &(gone.name not in Cluster.connected(&1)))
  end

  test "an API outage and a forced 410 leave the mesh intact" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b"], do: Cluster.add_pod!(cluster, pod)
    nodes = for pod <- ["pod-a", "pod-b"], do: Cluster.start_node!(cluster, "app", pod)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node)
    eventually(fn -> mesh?(nodes) end)

    fault!(cluster.sim, "faults/unavailable", seconds: 3)
    Process.sleep(1_000)
    assert mesh?(nodes)
    fault!(cluster.sim, "faults/compact")
    fault!(cluster.sim, "faults/cut-watches", expired: true)
    Process.sleep(3_000)
    assert mesh?(nodes)
  end

  test "a 403 leaves the mesh intact and tells which permission is missing" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b"], do: Cluster.add_pod!(cluster, pod)
    nodes = for pod <- ["pod-a", "pod-b"], do: Cluster.start_node!(cluster, "app", pod)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node)
    eventually(fn -> mesh?(nodes) end)

    fault!(cluster.sim, "rbac", namespaces: "elsewhere")
    fault!(cluster.sim, "faults/cut-watches")
    [a | _] = nodes
    health = "PodDist.Watch.health(:sys.get_state(:pod_dist_strategy).watch).last_error"

    error =
      eventually(fn ->
        case Node.eval(a, health) do
          {:ok, error} when is_binary(error) -> error
          _ -> nil
        end
      end)

    assert error =~ "403 Forbidden"
    assert error =~ "grant get, list and watch on pods"
    Process.sleep(1_500)
    assert mesh?(nodes)
  end

  test "version isolation keeps two releases apart" do
    cluster = Cluster.start!(mode: :epmd)
    Cluster.add_pod!(cluster, "v1-a", labels: [version: "1"])
    Cluster.add_pod!(cluster, "v1-b", labels: [version: "1"])
    Cluster.add_pod!(cluster, "v2-a", labels: [version: "2"])

    [v1a, v1b, v2a] =
      nodes = for pod <- ["v1-a", "v1-b", "v2-a"], do: Cluster.start_node!(cluster, "app", pod)

    for node <- nodes, do: Cluster.start_strategy!(cluster, node, version_label: "version")

    eventually(fn -> Cluster.connected(v1a) == [v1b.name] end)
    Process.sleep(1_500)
    assert Cluster.connected(v1a) == [v1b.name]
    assert Cluster.connected(v2a) == []
  end

  test "PodDist.doctor in a pod node checks every candidate node" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b", "pod-c"], do: Cluster.add_pod!(cluster, pod)
    Cluster.add_pod!(cluster, "pod-d", ready: false)
    [a, b] = nodes = for pod <- ["pod-a", "pod-b"], do: Cluster.start_node!(cluster, "app", pod)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node)
    eventually(fn -> mesh?(nodes) end)

    # The doctor finds the running strategy's config by itself.
    {:ok, report} = Node.eval(a, "PodDist.Doctor.run() |> PodDist.Doctor.format()")

    assert report =~ "[ok]   distribution: #{a.name}, short names"
    assert report =~ "[ok]   epmd module: PodDist.Epmd, epmd mode"
    assert report =~ ~r/\[ok\]   API server: https:.*, explicit credentials, TLS verified, 4 pods/
    assert report =~ "4 seen, 3 eligible"
    assert report =~ "pod-d: not Ready"
    assert report =~ "[ok]   own pod: default/pod-a #{Cluster.pod_ip(cluster, "pod-a")}, eligible"
    ip_b = Cluster.pod_ip(cluster, "pod-b")
    assert report =~ ~r/\[ok\]   node #{b.name}: pod-b -> #{ip_b}, port \d+ answers, connected/
    # pod-c is Ready but runs no node: its epmd knows no name.
    assert report =~ "[warn] node in pod-c: no node name known for this pod"
  end

  test "PodDist.doctor observes: it connects nobody, and a node outside the cluster stays so" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b"], do: Cluster.add_pod!(cluster, pod, labels: [role: "core"])
    Cluster.add_pod!(cluster, "pod-x")
    [a, b] = nodes = for pod <- ["pod-a", "pod-b"], do: Cluster.start_node!(cluster, "app", pod)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node, label_selector: "role=core")
    eventually(fn -> mesh?(nodes) end)

    # x runs no strategy (as in a hidden-node topology, or a node leaving): the doctor,
    # checking the cluster's config from it, connects it to nobody.
    x = Cluster.start_node!(cluster, "app", "pod-x")

    config = [
      api_url: "https://198.51.100.254:6443",
      ca_file: Path.join(cluster.sim.dir, "ca.crt"),
      token_file: Path.join(cluster.sim.dir, "serviceaccount/token"),
      namespaces: ["default"],
      label_selector: "role=core"
    ]

    {:ok, report} =
      Node.eval(x, "PodDist.Doctor.run(#{inspect(config)}) |> PodDist.Doctor.format()")

    for {node, pod} <- [{a, "pod-a"}, {b, "pod-b"}] do
      ip = Cluster.pod_ip(cluster, pod)

      assert report =~
               ~r/\[warn\] node #{node.name}: #{pod} -> #{ip}, port \d+ answers, not connected/
    end

    Process.sleep(500)
    assert Cluster.connected(x) == []
    assert mesh?(nodes)
  end
end
