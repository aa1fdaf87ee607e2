defmodule PodDist.EpmdTest do
  # Real BEAM nodes as pods on loopback addresses; each listens on its own pod IP.
  use PodDist.SimCase, async: false

  alias PodDist.Test.Node

  # The waits are told apart by configuration, not by timers: where the feature must not
  # wait, the configured wait (10 minutes) is far beyond the test's bounds, so a wait
  # that should not happen times the test out instead of slipping under a bound.
  @long_sync_ms 600_000

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
             Node.eval(a, "PodDist.Epmd.address_please(~c\"worker\", ~c\"pod-b\", :inet)")

    # By IP, as the distribution asks after address_please; an undeclared basename gets
    # the default port.
    assert {:ok, {:port, 4371, 6}} =
             Node.eval(a, "PodDist.Epmd.port_please(~c\"api\", {127, 0, 1, 2})")

    assert {:ok, {:ok, {127, 0, 1, 2}, 4370, 6}} =
             Node.eval(a, "PodDist.Epmd.address_please(~c\"other\", ~c\"pod-b\", :inet)")

    assert {:ok, {:ok, [{~c"api", 4371}, {~c"worker", 4372}]}} =
             Node.eval(a, "PodDist.Epmd.names(~c\"pod-b\")")

    # `bin/app remote` from inside pod-b: a remote shell shares the pod's `dist` port
    # with nobody, since it listens anywhere when the declared port is taken.
    shell = Node.remote_shell(sim, api.name, "pod-b", "node().\n", ip: "127.0.1.2")
    assert shell =~ "(api@pod-b)1>"
    assert shell =~ "'api@pod-b'"

    # Not a pod: the stock resolver answers, on the default port.
    assert {:ok, {:ok, {127, 0, 0, 1}, 4370, 6}} =
             Node.eval(a, "PodDist.Epmd.address_please(~c\"x\", ~c\"localhost\", :inet)")

    # The mode and the default port are settled at boot: the environment changed later
    # moves neither (epmd mode would answer an IP alone).
    assert {:ok, {:epmdless, {:ok, {127, 0, 1, 2}, 4370, 6}}} =
             Node.eval(a, """
             System.put_env("POD_DIST_MODE", "epmd")
             System.put_env("POD_DIST_DIST_PORT", "9999")
             {PodDist.Epmd.mode(), PodDist.Epmd.address_please(~c"other", ~c"pod-b", :inet)}
             """)
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
             Node.eval(api, "PodDist.Epmd.address_please(~c\"worker\", ~c\"pod-d\", :inet)")

    assert {:ok, {:ok, names}} = Node.eval(api, "PodDist.Epmd.names(~c\"pod-d\")")
    assert Enum.any?(names, &match?({~c"worker", _}, &1))
  end

  test "a slow API server never holds kernel boot beyond the configured wait", %{sim: sim} do
    create_pod(sim, "default", "pod-s", ip: "127.0.5.1", ports: [{"dist", 4370}])
    fault!(sim, "faults/latency", ms: 2_000)
    # Epmd-less with its port from the container: nothing at boot needs the API.
    env = [{"POD_DIST_SYNC_TIMEOUT_MS", "1000"}, {"POD_DIST_LISTEN_PORT", "4370"}]
    started = System.monotonic_time(:millisecond)
    [node] = start_nodes(sim, [{"app", "pod-s", ip: "127.0.5.1", env: env}])
    # Up although the first list takes longer than the wait: a VM start plus at most the
    # configured 1 s, far from the 5 s default (a boot here takes about 1 s).
    assert System.monotonic_time(:millisecond) - started < 3_500

    # A lookup past the deadline answers, though the list is not in yet: with the
    # configured wait now 10 minutes, a lookup that waited anew would outlast the eval.
    assert {:ok, {:error, _}} =
             Node.eval(node, """
             Process.sleep(1_000)
             System.put_env("POD_DIST_SYNC_TIMEOUT_MS", "#{@long_sync_ms}")
             PodDist.Epmd.address_please(~c"x", ~c"pod-t", :inet)
             """)

    fault!(sim, "faults/latency", ms: 0)

    eventually(fn ->
      Node.eval(node, "PodDist.Watch.resolve(PodDist.Epmd.watch(), \"pod-s\")") ==
        {:ok, {:ok, {127, 0, 5, 1}}}
    end)
  end

  test "a node whose NIF cannot load boots as with the stock erl_epmd, says why once, and the doctor reports it",
       %{sim: sim} do
    epmd_port = 14_370

    start_epmd!(epmd_port)
    lib = lib_without_nif!()

    common = [ip: "127.0.0.1", mode: :epmd, epmd_port: epmd_port]

    [no_nif] =
      start_nodes(sim, [
        {"nonif", "localhost", [pod_dist_ebin: Path.join(lib, "ebin")] ++ common}
      ])

    [peer] = start_nodes(sim, [{"peer", "localhost", common}])

    connect_and_call(no_nif, peer.name)
    connect_and_call(peer, no_nif.name)

    output = Node.output(no_nif)
    assert length(String.split(output, "cannot load its NIF")) == 2, output
    assert output =~ "#{lib}/priv/pod_dist_nif.so is missing: run `mix compile`"
    assert output =~ "works as with the stock erl_epmd"
    assert {:ok, nil} = Node.eval(no_nif, "PodDist.Epmd.watch()")

    assert {:ok, %{status: :fail, fix: fix}} =
             Node.eval(no_nif, ~s|Enum.find(PodDist.Doctor.run(), &(&1.name == "NIF"))|)

    assert fix =~ "pod_dist_nif.so is missing: run `mix compile`"
  end

  test "while the API answers 403: IPs never wait, pod names wait for the list and resolve once it is in",
       %{sim: sim} do
    fault!(sim, "rbac", namespaces: "elsewhere")
    create_pod(sim, "default", "pod-w", ip: "127.0.6.1", ports: [{"dist", 4370}])
    create_pod(sim, "default", "pod-y", ip: "127.0.6.2", ports: [{"dist", 4370}])

    env = [
      {"POD_DIST_LISTEN_PORT", "4370"},
      {"POD_DIST_SYNC_TIMEOUT_MS", Integer.to_string(@long_sync_ms)}
    ]

    [node] = start_nodes(sim, [{"app", "pod-w", ip: "127.0.6.1", env: env}])

    # An IP literal never waits for the pod list: a wait would last until the deadline,
    # 10 minutes away, and Node.eval gives up after 15 s.
    for _ <- 1..2 do
      assert {:ok, :pang} = Node.eval(node, ~s|:net_adm.ping(:"nobody@127.0.0.1")|)
    end

    # A pod name waits for the list, however many ask at once.
    assert {:ok, :waiting} =
             Node.eval(node, """
             collector = fn ->
               lookup = fn -> PodDist.Epmd.address_please(~c"app", ~c"pod-y", :inet) end
               answers = 1..3 |> Enum.map(fn _ -> Task.async(lookup) end) |> Task.await_many(:infinity)
               :persistent_term.put(:pod_dist_test_lookups, answers)
             end
             spawn(collector)
             Process.sleep(2_000)
             :persistent_term.get(:pod_dist_test_lookups, :waiting)
             """)

    # The API comes back: every waiting lookup resolves once the watch has the list (its
    # own retry backoff decides when), long before the deadline.
    fault!(sim, "rbac", namespaces: "*")

    assert {:ok, answers} =
             Node.eval(
               node,
               """
               Enum.find_value(1..5_000, fn _ ->
                 Process.sleep(10)
                 :persistent_term.get(:pod_dist_test_lookups, nil)
               end)
               """,
               60_000
             )

    assert answers == List.duplicate({:ok, {127, 0, 6, 2}, 4370, 6}, 3)
  end

  test "before the first list, a connect never holds net_kernel: its own setup waits", %{
    sim: sim
  } do
    fault!(sim, "rbac", namespaces: "elsewhere")
    create_pod(sim, "default", "pod-n", ip: "127.0.6.4", ports: [{"dist", 4370}])
    create_pod(sim, "default", "pod-m", ip: "127.0.6.5", ports: [{"dist", 4370}])

    env = [
      {"POD_DIST_LISTEN_PORT", "4370"},
      {"POD_DIST_SYNC_TIMEOUT_MS", Integer.to_string(@long_sync_ms)}
    ]

    [node, _peer] =
      start_nodes(sim, [
        {"app", "pod-n", ip: "127.0.6.4", env: env},
        {"app", "pod-m", ip: "127.0.6.5", env: env}
      ])

    # A connect to a pod name while the list is not in. Were net_kernel waiting for the
    # list (10 minutes away), the call to it below would exit and Node.eval fail.
    assert {:ok, {:answering, in_pod_dist?}} =
             Node.eval(node, """
             spawn(fn -> Node.connect(:"app@pod-m") end)
             Process.sleep(500)
             _ = :sys.get_state(:net_kernel, 5_000)
             {:current_stacktrace, stack} =
               Process.info(Process.whereis(:net_kernel), :current_stacktrace)
             # PodDist.Epmd, its mode modules, or PodDist.Watch.
             ours? = &String.starts_with?(inspect(elem(&1, 0)), ["PodDist.Epmd", "PodDist.Watch"])
             {:answering, Enum.any?(stack, ours?)}
             """)

    refute in_pod_dist?

    # Once the list is in, the name connects (the waiting setup, or the next attempt).
    fault!(sim, "rbac", namespaces: "*")

    assert {:ok, true} =
             Node.eval(
               node,
               """
               Enum.any?(1..600, fn _ ->
                 Node.connect(:"app@pod-m") or (Process.sleep(100) && false)
               end)
               """,
               90_000
             )
  end

  test "the deadline is fixed at boot: past it, pod-name lookups answer at once", %{sim: sim} do
    fault!(sim, "rbac", namespaces: "elsewhere")
    create_pod(sim, "default", "pod-v", ip: "127.0.6.3", ports: [{"dist", 4370}])
    create_pod(sim, "default", "pod-y", ip: "127.0.6.2", ports: [{"dist", 4370}])
    # A deadline that has passed by the time anyone looks up.
    env = [{"POD_DIST_LISTEN_PORT", "4370"}, {"POD_DIST_SYNC_TIMEOUT_MS", "1"}]
    [node] = start_nodes(sim, [{"app", "pod-v", ip: "127.0.6.3", env: env}])

    # Configuration read later does not move the deadline: were it read per lookup,
    # these lookups would wait 10 minutes, and Node.eval gives up after 15 s.
    lookups = """
    System.put_env("POD_DIST_SYNC_TIMEOUT_MS", "#{@long_sync_ms}")
    lookup = fn -> PodDist.Epmd.address_please(~c"app", ~c"pod-y", :inet) end
    1..3 |> Enum.map(fn _ -> Task.async(lookup) end) |> Task.await_many(:infinity)
    """

    for _ <- 1..2 do
      assert {:ok, [{:error, _}, {:error, _}, {:error, _}]} = Node.eval(node, lookups)
    end
  end

  test "a watch that dies is restarted, says so in its health and the doctor, and follows the server again",
       %{sim: sim} do
    create_pod(sim, "default", "pod-r", ip: "127.0.7.1", ports: [{"dist", 4370}])
    env = [{"POD_DIST_LISTEN_PORT", "4370"}]
    [node] = start_nodes(sim, [{"app", "pod-r", ip: "127.0.7.1", env: env}])
    on_node = fn code -> Node.eval(node, "watch = PodDist.Epmd.watch()\n" <> code, 30_000) end
    health = fn -> elem(on_node.("PodDist.Watch.health(watch)"), 1) end
    resolve = fn host -> elem(on_node.("PodDist.Watch.resolve(watch, #{inspect(host)})"), 1) end

    # Listed, and its watch request open: the next pod event reaches it.
    eventually(fn -> health.().synced and sim_stats(sim)["open_watches"] == 1 end)

    # The watch task panics at its next event (a test-only NIF), the event of a pod's
    # creation. The Role is revoked first (the open watch still streams): the restarted
    # watch's list gets a 403, so what the watch reports between its death and its
    # recovery stays there to be seen.
    assert {:ok, :ok} = on_node.("PodDist.Native.panic_watch_for_test(watch.resource)")
    fault!(sim, "rbac", namespaces: "elsewhere")
    create_pod(sim, "default", "at-the-panic", ip: "127.0.7.2")
    eventually(fn -> match?(%{restarts: 1, error: :forbidden}, health.()) end)

    dead = health.()
    assert dead.last_restart =~ "the watch panicked: injected by a test; restarting it in "
    # Not synced: a pod-like name nobody has is not known yet, rather than not found.
    refute dead.synced
    assert resolve.("nobody-yet") == {:error, :not_synced}

    assert {:ok, report} = on_node.("PodDist.Doctor.format(PodDist.Doctor.run())")
    assert report =~ "the native watch died and was restarted once; last: the watch panicked"

    # The Role is back: the restarted watch lists (the pod whose event met the panic is
    # in), is synced, and follows what changes from then on.
    fault!(sim, "rbac", namespaces: "*")
    create_pod(sim, "default", "after", ip: "127.0.7.3")

    eventually(fn ->
      resolve.("at-the-panic") == {:ok, {127, 0, 7, 2}} and
        resolve.("after") == {:ok, {127, 0, 7, 3}}
    end)

    assert %{synced: true, restarts: 1, last_error: nil} = health.()
  end
end
