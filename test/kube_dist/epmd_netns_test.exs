defmodule KubeDist.EpmdNetnsTest do
  # Pods as network namespaces, each with its own address (and epmd, in epmd mode);
  # real BEAM nodes named after their pods. Needs root.
  use ExUnit.Case, async: false

  alias KubeDist.Test.{Cluster, Node}

  @moduletag :netns

  defp connect_and_call(from, to) do
    assert {:ok, true} = Node.eval(from, "Node.connect(#{inspect(to)})"), "#{from.name} -> #{to}"
    assert {:ok, ^to} = Node.eval(from, ":erpc.call(#{inspect(to)}, Node, :self, [])")
  end

  test "epmd mode: same and different basenames, two nodes in one pod, all connected" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b", "pod-c"], do: Cluster.add_pod!(cluster, pod)

    nodes = [
      Cluster.start_node!(cluster, "app", "pod-a"),
      Cluster.start_node!(cluster, "app", "pod-b"),
      Cluster.start_node!(cluster, "api", "pod-c"),
      Cluster.start_node!(cluster, "worker", "pod-c")
    ]

    for from <- nodes, to <- nodes, from != to, do: connect_and_call(from, to.name)
    [a | _] = nodes
    assert {:ok, {:ok, names}} = Node.eval(a, "KubeDist.Epmd.names(~c\"pod-c\")")
    assert Enum.sort(Enum.map(names, &elem(&1, 0))) == [~c"api", ~c"worker"]
  end

  test "epmd-less mode: no epmd anywhere, ports declared by the pods" do
    cluster = Cluster.start!(mode: :epmdless)
    Cluster.add_pod!(cluster, "pod-a", ports: [{"dist", 4370}])
    Cluster.add_pod!(cluster, "pod-b", ports: [{"dist-api", 4371}, {"dist-worker", 4372}])
    a = Cluster.start_node!(cluster, "app", "pod-a")
    api = Cluster.start_node!(cluster, "api", "pod-b")
    worker = Cluster.start_node!(cluster, "worker", "pod-b")

    connect_and_call(a, api.name)
    connect_and_call(a, worker.name)
    connect_and_call(worker, api.name)
    # The connects above used the declared ports with no epmd to ask: none answers in any pod.
    for pod <- ["pod-a", "pod-b"] do
      assert {_, status} =
               Cluster.in_pod(cluster, pod, [System.find_executable("epmd"), "-names"])

      assert status != 0
    end
  end

  test "a deleted pod's name never reaches the pod that reuses its IP" do
    cluster = Cluster.start!(mode: :epmd)
    ip = Cluster.add_pod!(cluster, "pod-old")
    Cluster.add_pod!(cluster, "pod-b")
    old = Cluster.start_node!(cluster, "app", "pod-old")
    b = Cluster.start_node!(cluster, "app", "pod-b")
    connect_and_call(b, old.name)

    Node.stop(old)
    Cluster.delete_pod!(cluster, "pod-old")
    Cluster.remove_netns!(cluster, "pod-old")
    Cluster.add_pod!(cluster, "pod-new", ip: ip, labels: [app: "other"])
    new = Cluster.start_node!(cluster, "app", "pod-new")

    assert {:ok, false} = Node.eval(b, "Node.connect(:\"app@pod-old\")")

    assert {:ok, :error} =
             Node.eval(b, "KubeDist.Watch.resolve(KubeDist.Epmd.watch(), \"pod-old\")")

    connect_and_call(b, new.name)
  end

  test "long names resolve through the index too" do
    cluster = Cluster.start!(mode: :epmd)
    Cluster.add_pod!(cluster, "pod-a")
    Cluster.add_pod!(cluster, "pod-b")
    a = Cluster.start_node!(cluster, "app", "pod-a", name_flag: "-name", host: "pod-a.default")

    b =
      Cluster.start_node!(cluster, "app", "pod-b", name_flag: "-name", host: "pod-b.default.pod")

    connect_and_call(a, b.name)
    connect_and_call(b, a.name)
  end
end
