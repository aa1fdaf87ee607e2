defmodule PodDist.SlicesNetnsTest do
  # The slice source in real nodes, one per pod namespace: a cluster whose Role grants
  # nothing on pods (only get/list/watch on endpointslices) forms and follows its mesh
  # from the EndpointSlices of one headless Service. Needs root.
  use ExUnit.Case, async: false

  import PodDist.SimCase,
    only: [eventually: 1, set_running: 5, fault!: 3, fault!: 2, api: 4, api: 5]

  alias PodDist.Test.{Cluster, Node}

  @moduletag :netns

  @env [{"POD_DIST_SERVICE", "shop-dist"}]

  # Run in a node: counts the nodes that go down from now on (ask with {:get, pid}).
  @count_nodedowns """
  pid =
    spawn(fn ->
      :net_kernel.monitor_nodes(true)
      loop = fn loop, downs ->
        receive do
          {:nodedown, node} -> loop.(loop, [node | downs])
          {:get, from} -> send(from, downs); loop.(loop, downs)
          _ -> loop.(loop, downs)
        end
      end
      loop.(loop, [])
    end)

  Process.register(pid, :nodedowns)
  :ok
  """

  defp slice_ports(cluster) do
    {:ok, 200, body} =
      api(cluster.sim, :get, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", nil)

    ports =
      for slice <- PodDist.Test.JSON.decode!(body)["items"],
          port <- slice["ports"] || [],
          uniq: true,
          do: port["name"]

    Enum.sort(ports)
  end

  defp mesh?(nodes) do
    names = Enum.map(nodes, & &1.name)
    Enum.all?(nodes, fn n -> Cluster.connected(n) == Enum.sort(names -- [n.name]) end)
  end

  # The headless Service the nodes read, and a Role that grants only its slices.
  defp slices_only!(cluster, ports) do
    fault!(cluster.sim, "rbac", namespaces: "*", resources: "endpointslices.discovery.k8s.io")

    service = %{
      metadata: %{name: "shop-dist"},
      spec: %{
        clusterIP: "None",
        publishNotReadyAddresses: true,
        selector: %{app: "shop"},
        ports: for({name, port} <- ports, do: %{name: name, port: port, targetPort: name})
      }
    }

    {:ok, 201, _} = api(cluster.sim, :post, "/api/v1/namespaces/default/services", service)
  end

  defp last_error(node) do
    case Node.eval(node, "PodDist.Watch.health(:sys.get_state(:pod_dist_strategy).watch)") do
      {:ok, %{last_error: error}} -> error
      _ -> nil
    end
  end

  test "a mesh forms and follows readiness, a slice replaced, deletion, outage and a 403 from slices alone" do
    cluster = Cluster.start!(mode: :epmd)
    slices_only!(cluster, [{"epmd", 4369}])

    for pod <- ["pod-a", "pod-b", "pod-c"],
        do: Cluster.add_pod!(cluster, pod, labels: [app: "shop"])

    # Not selected by the Service: never joined.
    Cluster.add_pod!(cluster, "stranger")

    nodes =
      for pod <- ["pod-a", "pod-b", "pod-c"],
          do: Cluster.start_node!(cluster, "app", pod, env: @env)

    stranger = Cluster.start_node!(cluster, "app", "stranger", env: @env)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node, service: "shop-dist")
    eventually(fn -> mesh?(nodes) end)
    [a | _] = nodes
    # Reading slices needs no access to pods: the watch is in no error.
    assert last_error(a) == nil
    refute Enum.any?(nodes, &(stranger.name in Cluster.connected(&1)))

    # A pod known while not Ready is left alone until it turns Ready.
    Cluster.add_pod!(cluster, "pod-d", labels: [app: "shop"], ready: false)
    late = Cluster.start_node!(cluster, "app", "pod-d", env: @env)
    Cluster.start_strategy!(cluster, late, service: "shop-dist")
    Process.sleep(1_500)
    assert Cluster.connected(late) == []
    set_running(cluster.sim, "default", "pod-d", Cluster.pod_ip(cluster, "pod-d"), true)
    nodes = nodes ++ [late]
    eventually(fn -> mesh?(nodes) end)

    # The Service's ports change: the controller replaces the slice (delete and create,
    # seen in either order). No pod flaps: no node goes down anywhere.
    for node <- nodes, do: {:ok, :ok} = Node.eval(node, @count_nodedowns)

    {:ok, 200, _} =
      api(
        cluster.sim,
        :patch,
        "/api/v1/namespaces/default/services/shop-dist",
        %{
          spec: %{
            ports: [%{name: "epmd", port: 4369}, %{name: "http", port: 80, targetPort: 8080}]
          }
        },
        "application/merge-patch+json"
      )

    eventually(fn -> slice_ports(cluster) == ["epmd", "http"] end)
    # Past the 2 s grace: a pod dropped with the old slice would be let go by now.
    Process.sleep(3_500)

    for node <- nodes,
        do:
          assert(
            Node.eval(node, "send(:nodedowns, {:get, self()}); receive do n -> n end") ==
              {:ok, []}
          )

    assert mesh?(nodes)

    # Deleted at once (force-deleted): its endpoint vanishes, which is no evidence, and its
    # kubelet kills its VM. Once dead, nobody calls it back.
    [_, gone | rest] = nodes
    Cluster.delete_pod!(cluster, "pod-b")
    Node.stop(gone)
    eventually(fn -> Enum.all?(rest, &(gone.name not in Cluster.connected(&1))) end)
    Process.sleep(1_200)
    assert Enum.all?(rest, &(gone.name not in Cluster.connected(&1)))

    # Terminating (a graceful deletion, 30 s): let go at once, from its slice's
    # terminating condition, long before the pod is gone.
    [_terminating, late] = rest
    PodDist.SimCase.delete_pod(cluster.sim, "default", "pod-c", 30)
    eventually(fn -> mesh?([a, late]) end)
    Process.sleep(1_200)
    assert mesh?([a, late])

    # An API outage leaves the mesh as it was.
    fault!(cluster.sim, "faults/unavailable", seconds: 3)
    Process.sleep(1_000)
    assert mesh?([a, late])
    Process.sleep(3_000)

    # A 403 on the slices leaves the mesh intact and says what to grant.
    fault!(cluster.sim, "rbac", namespaces: "*", resources: "pods")
    fault!(cluster.sim, "faults/cut-watches")
    # (After the outage's 503s, once the watch has retried.)
    error = eventually(fn -> (error = last_error(a)) && error =~ "403" && error end)

    assert error =~
             ~s(endpointslices of service "shop-dist" in namespace "default": 403 Forbidden)

    assert error =~ "grant get, list and watch on endpointslices (API group discovery.k8s.io)"
    Process.sleep(1_500)
    assert mesh?([a, late])
  end

  test "epmd-less: a pod with two nodes takes their ports from the Service's port names" do
    cluster = Cluster.start!(mode: :epmdless)
    slices_only!(cluster, [{"dist", 4370}, {"dist-api", 4371}, {"dist-worker", 4372}])
    Cluster.add_pod!(cluster, "pod-a", labels: [app: "shop"], ports: [{"dist", 4370}])

    Cluster.add_pod!(cluster, "pod-b",
      labels: [app: "shop"],
      ports: [{"dist-api", 4371}, {"dist-worker", 4372}]
    )

    nodes = [
      Cluster.start_node!(cluster, "app", "pod-a", env: @env),
      Cluster.start_node!(cluster, "api", "pod-b", env: @env),
      Cluster.start_node!(cluster, "worker", "pod-b", env: @env)
    ]

    for node <- nodes, do: Cluster.start_strategy!(cluster, node, service: "shop-dist")
    eventually(fn -> mesh?(nodes) end)
    assert Enum.all?(nodes, &(last_error(&1) == nil))
  end
end
