defmodule KubeDist.EpmdTest do
  # Real BEAM nodes as pods on loopback addresses; each listens on its own pod IP.
  use KubeDist.SimCase, async: false

  alias KubeDist.Test.Node

  defp start_nodes(sim, specs) do
    nodes = for {basename, pod, opts} <- specs, do: Node.start!(sim, basename, pod, opts)
    on_exit(fn -> Enum.each(nodes, &Node.stop/1) end)
    nodes
  end

  defp connect_and_call(from, to) do
    assert {:ok, true} = Node.eval(from, "Node.connect(#{inspect(to)})")
    assert {:ok, ^to} = Node.eval(from, ":erpc.call(#{inspect(to)}, Node, :self, [])")
  end

  test "epmd-less: pod-name nodes, two in one pod, on the ports their pods declare", %{sim: sim} do
    create_pod(sim, "default", "pod-a", ip: "127.0.1.1", ports: [{"dist", 4370}])

    create_pod(sim, "default", "pod-b",
      ip: "127.0.1.2",
      ports: [{"dist-api", 4371}, {"dist-worker", 4372}]
    )

    [a, api, worker] =
      start_nodes(sim, [
        {"app", "pod-a", ip: "127.0.1.1"},
        {"api", "pod-b", ip: "127.0.1.2"},
        {"worker", "pod-b", ip: "127.0.1.2"}
      ])

    connect_and_call(a, api.name)
    connect_and_call(a, worker.name)
    connect_and_call(api, worker.name)

    assert {:ok, {:ok, {127, 0, 1, 2}, 4372, 6}} =
             Node.eval(a, "KubeDist.Epmd.address_please(~c\"worker\", ~c\"pod-b\", :inet)")

    # By IP, as the distribution asks after address_please; an undeclared basename gets
    # the default port.
    assert {:ok, {:port, 4371, 6}} =
             Node.eval(a, "KubeDist.Epmd.port_please(~c\"api\", {127, 0, 1, 2})")

    assert {:ok, {:ok, {127, 0, 1, 2}, 4370, 6}} =
             Node.eval(a, "KubeDist.Epmd.address_please(~c\"other\", ~c\"pod-b\", :inet)")

    assert {:ok, {:ok, [{~c"api", 4371}, {~c"worker", 4372}]}} =
             Node.eval(a, "KubeDist.Epmd.names(~c\"pod-b\")")

    # `bin/app remote` from inside pod-b: a remote shell shares the pod's `dist` port
    # with nobody, since it listens anywhere when the declared port is taken.
    shell = Node.remote_shell(sim, api.name, "pod-b", "node().\n", ip: "127.0.1.2")
    assert shell =~ "(api@pod-b)1>"
    assert shell =~ "'api@pod-b'"

    # Not a pod: the stock resolver answers, on the default port.
    assert {:ok, {:ok, {127, 0, 0, 1}, 4370, 6}} =
             Node.eval(a, "KubeDist.Epmd.address_please(~c\"x\", ~c\"localhost\", :inet)")
  end

  test "epmd mode: heterogeneous basenames registered with epmd", %{sim: sim} do
    epmd_port = 14_369

    epmd =
      Port.open({:spawn_executable, System.find_executable("epmd")}, [
        :binary,
        args: ["-port", "#{epmd_port}"]
      ])

    {:os_pid, epmd_pid} = Port.info(epmd, :os_pid)
    on_exit(fn -> System.cmd("kill", [to_string(epmd_pid)]) end)
    Process.sleep(200)

    create_pod(sim, "default", "pod-c", ip: "127.0.2.1")
    create_pod(sim, "default", "pod-d", ip: "127.0.2.2")

    [api, worker] =
      start_nodes(sim, [
        {"api", "pod-c", ip: "127.0.2.1", mode: :epmd, epmd_port: epmd_port},
        {"worker", "pod-d", ip: "127.0.2.2", mode: :epmd, epmd_port: epmd_port}
      ])

    connect_and_call(api, worker.name)

    assert {:ok, {:ok, {127, 0, 2, 2}}} =
             Node.eval(api, "KubeDist.Epmd.address_please(~c\"worker\", ~c\"pod-d\", :inet)")

    assert {:ok, {:ok, names}} = Node.eval(api, "KubeDist.Epmd.names(~c\"pod-d\")")
    assert Enum.any?(names, &match?({~c"worker", _}, &1))
  end

  test "a slow API server never holds kernel boot beyond the configured wait", %{sim: sim} do
    create_pod(sim, "default", "pod-s", ip: "127.0.5.1", ports: [{"dist", 4370}])
    fault!(sim, "faults/latency", ms: 2_000)
    env = [{"KUBE_DIST_SYNC_TIMEOUT_MS", "1000"}]
    started = System.monotonic_time(:millisecond)
    [node] = start_nodes(sim, [{"app", "pod-s", ip: "127.0.5.1", env: env}])
    # Up although the first list takes longer than the wait; the pod name resolves later.
    assert System.monotonic_time(:millisecond) - started < 10_000
    fault!(sim, "faults/latency", ms: 0)

    eventually(fn ->
      Node.eval(node, "KubeDist.Watch.resolve(KubeDist.Epmd.watch(), \"pod-s\")") ==
        {:ok, {:ok, {127, 0, 5, 1}}}
    end)
  end
end
