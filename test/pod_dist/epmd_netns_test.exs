defmodule PodDist.EpmdNetnsTest do
  # Pods as network namespaces, each with its own address (and epmd, in epmd mode);
  # real BEAM nodes named after their pods. Needs root.
  use ExUnit.Case, async: false

  alias PodDist.Test.{Cluster, Node}

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

    # `kubectl exec pod-a -- bin/app remote`: a remote shell inside the pod reaches its node.
    shell = Cluster.remote_shell(cluster, a, "pod-a", "lists:member('api@pod-c', nodes()).\n")
    assert shell =~ "(app@pod-a)1>"
    assert shell =~ ~r/\btrue\r?\n/
    assert {:ok, {:ok, names}} = Node.eval(a, "PodDist.Epmd.names(~c\"pod-c\")")
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

  test "epmd-less with a slow API at boot: each node of a pod listens on its declared port, or refuses" do
    cluster = Cluster.start!(mode: :epmdless)
    # Like examples/kubernetes: one pod, a container per node, each declaring its port.
    container = fn name, port ->
      %{
        "name" => name,
        "image" => "shop:1",
        "ports" => [%{"name" => "dist-#{name}", "containerPort" => port}]
      }
    end

    spec = %{
      "containers" => [
        container.("api", 4370),
        container.("worker", 4371),
        container.("extra", 4372)
      ]
    }

    Cluster.add_pod!(cluster, "shop", spec: spec)
    Cluster.add_pod!(cluster, "pod-o", ports: [{"dist", 4370}])

    # Every API answer takes 3 s, three times the nodes' wait for their pod: only the
    # container's POD_DIST_LISTEN_PORT can tell them their ports at boot.
    PodDist.SimCase.fault!(cluster.sim, "faults/latency", ms: 3_000)

    env = fn port ->
      [env: [{"POD_DIST_SYNC_TIMEOUT_MS", "1000"}, {"POD_DIST_LISTEN_PORT", "#{port}"}]]
    end

    api = Cluster.start_node!(cluster, "api", "shop", env.(4370))
    worker = Cluster.start_node!(cluster, "worker", "shop", env.(4371))

    # Without it, a node whose pod is not listed by the deadline does not listen anywhere.
    assert {:error, _, output} =
             Cluster.start_node(cluster, "extra", "shop",
               env: [{"POD_DIST_SYNC_TIMEOUT_MS", "1000"}]
             )

    assert output =~ "refusing to start distribution for extra@shop: its listen port is unknown"
    assert output =~ "set POD_DIST_LISTEN_PORT"

    # With more time than the list takes, it waits for its pod and takes its declared port.
    extra =
      Cluster.start_node!(cluster, "extra", "shop", env: [{"POD_DIST_SYNC_TIMEOUT_MS", "15000"}])

    {listening, 0} = Cluster.in_pod(cluster, "shop", ["ss", "-ltnH"])
    ip = Cluster.pod_ip(cluster, "shop")
    for port <- [4370, 4371, 4372], do: assert(listening =~ "#{ip}:#{port} ")

    # A node in another pod dials the declared ports and reaches all three.
    PodDist.SimCase.fault!(cluster.sim, "faults/latency", ms: 0)
    other = Cluster.start_node!(cluster, "app", "pod-o")
    for node <- [api, worker, extra], do: connect_and_call(other, node.name)
  end

  test "dual stack: inet6_tcp nodes reach pods by their IPv6 address, inet_tcp nodes by IPv4" do
    cluster = Cluster.start!(mode: :epmdless)

    for pod <- ["pod-a", "pod-b"],
        do: Cluster.add_pod!(cluster, pod, dual_stack: true, ports: [{"dist", 4370}])

    v6 = fn pod ->
      Cluster.start_node!(cluster, "app6", pod,
        ip: Cluster.pod_ip6(cluster, pod),
        extra_args: ["-proto_dist", "inet6_tcp"]
      )
    end

    [a6, b6] = Enum.map(["pod-a", "pod-b"], v6)
    [a4, b4] = Enum.map(["pod-a", "pod-b"], &Cluster.start_node!(cluster, "app4", &1))

    connect_and_call(a6, b6.name)
    connect_and_call(a4, b4.name)
    {:ok, ip6} = :inet.parse_address(String.to_charlist(Cluster.pod_ip6(cluster, "pod-b")))
    {:ok, ip4} = :inet.parse_address(String.to_charlist(Cluster.pod_ip(cluster, "pod-b")))

    assert {:ok, {:ok, ^ip6, 4370, 6}} =
             Node.eval(a6, "PodDist.Epmd.address_please(~c\"app6\", ~c\"pod-b\", :inet6)")

    assert {:ok, {:ok, ^ip4, 4370, 6}} =
             Node.eval(a4, "PodDist.Epmd.address_please(~c\"app4\", ~c\"pod-b\", :inet)")
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
             Node.eval(b, "PodDist.Watch.resolve(PodDist.Epmd.watch(), \"pod-old\")")

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

  for mode <- [:epmd, :epmdless] do
    test "TLS distribution verifies pod-name certificates (#{mode} mode)" do
      cluster = Cluster.start!(mode: unquote(mode))
      Cluster.add_pod!(cluster, "pod-a", ports: [{"dist", 4370}])
      Cluster.add_pod!(cluster, "pod-b", ports: [{"dist", 4370}])
      dir = Path.join(System.tmp_dir!(), "#{cluster.id}-certs")

      {_, 0} =
        System.cmd(PodDist.Simulator.binary(), [
          "certs",
          "--dir",
          dir,
          "--san",
          "pod-a",
          "--san",
          "pod-b"
        ])

      on_exit(fn -> File.rm_rf(dir) end)

      [a, b] =
        for pod <- ["pod-a", "pod-b"],
            do: Cluster.start_node!(cluster, "app", pod, extra_args: tls_args(dir, pod, pod))

      connect_and_call(a, b.name)
      assert {:ok, {:ok, [[~c"inet_tls"]]}} = Node.eval(a, ":init.get_argument(:proto_dist)")

      # A node whose certificate names another pod is refused: verification is real.
      Cluster.add_pod!(cluster, "pod-c", ports: [{"dist", 4370}])

      impostor =
        Cluster.start_node!(cluster, "app", "pod-c", extra_args: tls_args(dir, "pod-a", "pod-c"))

      assert {:ok, false} = Node.eval(a, "Node.connect(#{inspect(impostor.name)})")
    end
  end

  # Each node presents a certificate for its pod name and checks its peer's the same way.
  defp tls_args(dir, cert, pod) do
    file = Path.join(dir, "#{pod}.conf")

    ssl = [
      certfile: ~c"#{dir}/#{cert}.pem",
      keyfile: ~c"#{dir}/#{cert}-key.pem",
      cacertfile: ~c"#{dir}/ca.pem",
      verify: :verify_peer
    ]

    config = [server: ssl ++ [fail_if_no_peer_cert: true], client: ssl]
    File.write!(file, :io_lib.format(~c"~p.~n", [config]))
    ["-proto_dist", "inet_tls", "-ssl_dist_optfile", file]
  end
end
