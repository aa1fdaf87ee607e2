defmodule PodDist.PartitionNetnsTest do
  # Membership changes on evidence, never on absence (issue 24): day-2 operations that
  # make pods vanish from the watch for a while leave the mesh and `global` untouched,
  # and a real departure costs each peer one nodedown. Real nodes, one per pod
  # namespace. Needs root.
  use ExUnit.Case, async: false

  import PodDist.SimCase, only: [eventually: 1, fault!: 3, create_pod: 4]
  import PodDist.Test.Membership

  alias PodDist.Test.Cluster

  @moduletag :netns

  test "slice source: the headless Service deleted and re-created (and its selector edited) costs no nodedown; global intact" do
    cluster = Cluster.start!(mode: :epmd)
    fault!(cluster.sim, "rbac", namespaces: "*", resources: "endpointslices.discovery.k8s.io")
    create_service!(cluster.sim, "shop-dist", "shop")
    pods = ["pod-a", "pod-b", "pod-c"]
    for pod <- pods, do: Cluster.add_pod!(cluster, pod, labels: [app: "shop"])
    env = [{"POD_DIST_SERVICE", "shop-dist"}]
    [a | _] = nodes = for pod <- pods, do: Cluster.start_node!(cluster, "app", pod, env: env)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node, service: "shop-dist")
    eventually(fn -> mesh?(nodes) end)
    for node <- nodes, do: record_nodedowns!(node)

    # Every endpoint vanishes (longer than the slice source's 2 s grace), then comes
    # back with the same pod uids.
    delete_service!(cluster.sim, "shop-dist")
    eventually(fn -> slice_count(cluster.sim) == 0 end)
    Process.sleep(3_000)
    create_service!(cluster.sim, "shop-dist", "shop")
    eventually(fn -> slice_count(cluster.sim) > 0 end)

    # Its selector edited to select nothing for a while, then back.
    patch_service!(cluster.sim, "shop-dist", %{selector: %{app: "nothing"}})
    Process.sleep(3_000)
    patch_service!(cluster.sim, "shop-dist", %{selector: %{app: "shop"}})

    # Past every grace and recall (3 s), at a 500 ms reconcile.
    Process.sleep(4_000)
    assert Enum.map(nodes, &nodedowns/1) == [[], [], []]
    assert mesh?(nodes)
    assert global_sees?(a, nodes, :after_service_recreated)
  end

  test "pods source: a pod's selected label removed for half a second and put back costs no nodedown" do
    cluster = Cluster.start!(mode: :epmd)
    pods = ["pod-a", "pod-b", "pod-c"]
    for pod <- pods, do: Cluster.add_pod!(cluster, pod, labels: [app: "shop"])
    [a | _] = nodes = for pod <- pods, do: Cluster.start_node!(cluster, "app", pod)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node, label_selector: "app=shop")
    eventually(fn -> mesh?(nodes) end)
    for node <- nodes, do: record_nodedowns!(node)

    for pod <- ["pod-b", "pod-a"] do
      label!(cluster.sim, pod, "app", nil)
      Process.sleep(500)
      label!(cluster.sim, pod, "app", "shop")
    end

    Process.sleep(4_000)
    assert Enum.map(nodes, &nodedowns/1) == [[], [], []]
    assert mesh?(nodes)
    assert global_sees?(a, nodes, :after_label_flip)
  end

  test "host: :ip: a Failed and a terminating pod holding a node's IP cost no nodedown" do
    cluster = Cluster.start!(mode: :epmd)
    pods = ["pod-a", "pod-b", "pod-c"]
    ips = for pod <- pods, do: Cluster.add_pod!(cluster, pod)

    [a, b, _] =
      nodes =
      for {pod, ip} <- Enum.zip(pods, ips),
          do: Cluster.start_node!(cluster, "app", pod, name_flag: "-name", host: ip)

    for node <- nodes, do: Cluster.start_strategy!(cluster, node, host: :ip)
    eventually(fn -> mesh?(nodes) end)
    for node <- nodes, do: record_nodedowns!(node)
    b_ip = Cluster.pod_ip(cluster, "pod-b")

    # An evicted pod (Failed, keeping its IP), and a finished one being deleted
    # (terminating), both at b's IP.
    create_pod(cluster.sim, "default", "evicted", ip: b_ip)
    PodDist.SimCase.evict(cluster.sim, "default", "evicted")
    create_pod(cluster.sim, "default", "finished", ip: b_ip)
    PodDist.SimCase.delete_pod(cluster.sim, "default", "finished", 30)

    Process.sleep(4_000)
    assert Enum.map(nodes, &nodedowns/1) == [[], [], []]
    assert mesh?(nodes)
    assert global_sees?(b, nodes, :after_ip_reused)

    assert {:ok, :member} =
             PodDist.Test.Node.eval(b, "PodDist.Strategy.info(:pod_dist_strategy).life")

    _ = a
  end

  test "real departures, two at once: each costs every other node exactly one nodedown" do
    cluster = Cluster.start!(mode: :epmd)
    pods = ["pod-a", "pod-b", "pod-c", "pod-d", "pod-e"]
    for pod <- pods, do: Cluster.add_pod!(cluster, pod)
    [a, b, c, d, e] = nodes = for pod <- pods, do: Cluster.start_node!(cluster, "app", pod)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node)
    eventually(fn -> mesh?(nodes) end)
    for node <- nodes, do: record_nodedowns!(node)

    PodDist.SimCase.delete_pod(cluster.sim, "default", "pod-d", 30)
    PodDist.SimCase.delete_pod(cluster.sim, "default", "pod-e", 30)
    eventually(fn -> Cluster.connected(d) == [] and Cluster.connected(e) == [] end)
    # Past every recall (3 s) and departed-grace (1 s).
    Process.sleep(4_500)

    downs =
      Map.new(nodes, &{&1.name, &1 |> nodedowns() |> Enum.map(fn down -> elem(down, 0) end)})

    for peer <- [a, b, c],
        do: assert(Enum.sort(downs[peer.name]) == [d.name, e.name], inspect(downs))

    for {leaving, other} <- [{d, e}, {e, d}] do
      assert Enum.sort(downs[leaving.name]) == Enum.sort([a.name, b.name, c.name, other.name]),
             inspect(downs)
    end

    assert mesh?([a, b, c])
    assert global_sees?(a, [a, b, c], :after_departure)
  end
end
