defmodule PodDist.FaultsNetnsTest do
  # Faults with real nodes in pod namespaces: a long API outage, hung or hostile epmds,
  # our own pod terminating, and minutes of churn. Needs root.
  use ExUnit.Case, async: false

  import PodDist.SimCase,
    only: [eventually: 1, eventually: 2, fault!: 3, set_running: 5, create_pod: 4, sim_stats: 1]

  alias PodDist.Test.{Cluster, Node}

  @moduletag :netns

  @tag timeout: 180_000
  test "a 60 s API outage disconnects nobody; afterwards the cluster follows what changed" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b", "pod-c"], do: Cluster.add_pod!(cluster, pod)

    [a, b, c] =
      nodes = for pod <- ["pod-a", "pod-b", "pod-c"], do: Cluster.start_node!(cluster, "app", pod)

    for node <- nodes, do: Cluster.start_strategy!(cluster, node)
    eventually(fn -> mesh?(nodes) end)
    for node <- nodes, do: record_nodedowns!(node)

    outage_ends = System.monotonic_time(:millisecond) + 60_000
    fault!(cluster.sim, "faults/unavailable", seconds: 60)
    fault!(cluster.sim, "faults/cut-watches", [])

    # Meanwhile (the admin API still works) pod-c is deleted (it terminates for 120 s,
    # past the outage: a pod removed meanwhile vanishes without evidence, and its kubelet
    # kills its VM), and pod-d comes with a node.
    PodDist.SimCase.delete_pod(cluster.sim, "default", "pod-c", 120)
    Cluster.add_pod!(cluster, "pod-d")
    d = Cluster.start_node!(cluster, "app", "pod-d")
    Cluster.start_strategy!(cluster, d)

    # The watches do fail, and the mesh stays as it was for the whole outage.
    eventually(fn -> Enum.all?(nodes, &is_binary(watch_health(&1).last_error)) end)
    Process.sleep(max(outage_ends - System.monotonic_time(:millisecond) - 1_000, 0))
    assert Enum.all?(nodes, &("pod-c" in index_names(&1)))
    assert mesh?(nodes)
    assert Cluster.connected(d) == []
    assert Enum.map(nodes, &nodedowns/1) == [[], [], []]

    # Afterwards (each watch retries at least every 4.95 s) every index matches the server:
    # pod-c's node is let go, by the others and by itself, and pod-d's joins the mesh.
    assert server_names(cluster) == ["pod-a", "pod-b", "pod-c", "pod-d"]
    everyone = [a, b, c, d]
    eventually(fn -> Enum.all?(everyone, &(index_names(&1) == server_names(cluster))) end, 60_000)
    eventually(fn -> disconnected?(c, [a, b, d]) end)
    eventually(fn -> mesh?([a, b, d]) end)
  end

  @tag timeout: 150_000
  test "after an API outage, a pod added as the API comes back resolves in every node at its next retry; nodes asked gently meanwhile" do
    cluster = Cluster.start!(mode: :epmd)
    pods = ["pod-a", "pod-b", "pod-c"]
    for pod <- pods, do: Cluster.add_pod!(cluster, pod)
    nodes = for pod <- pods, do: Cluster.start_node!(cluster, "app", pod)
    # Each node runs one watch, its PodDist.Epmd's: the requests counted below are theirs.
    eventually(fn -> Enum.all?(nodes, &(epmd_resolve(&1, "pod-c") != :error)) end)
    eventually(fn -> sim_stats(cluster.sim)["open_watches"] == length(nodes) end)

    # 503 for everything, until recovered by hand below (so the moment is known exactly).
    fault!(cluster.sim, "faults/unavailable", seconds: 600)
    # The retries' first seconds are quick (a blip heals at once); the budget is the
    # steady rate after them: about 12 a minute, so never more often than every 4.45 s
    # (13.5 a minute; a window's edge may hold one more).
    Process.sleep(6_000)
    fault!(cluster.sim, "stats/reset", [])
    window_started = System.monotonic_time(:millisecond)
    Process.sleep(24_000)
    requests = sim_stats(cluster.sim)["requests"]
    window = System.monotonic_time(:millisecond) - window_started

    assert Enum.all?(Map.keys(requests), &String.starts_with?(&1, "UNAVAILABLE ")),
           inspect(requests)

    per_node = Enum.sum(Map.values(requests)) / length(nodes)
    assert per_node > 0, "the watches did retry"

    assert per_node <= window / 4_450 + 1,
           "#{per_node} requests per node in #{window} ms: #{Float.round(per_node * 60_000 / window, 1)} a minute"

    assert Enum.all?(nodes, &(epmd_resolve(&1, "late") == :error))

    # The API is back, and at once a pod is added: every node resolves it at its next
    # retry, at most 4.95 s later. The bound is loose (a loaded machine adds to it);
    # it still fails with a backoff that grows past the schedule's cap (the 16 to 23 s
    # measured before). bench/outage.exs measures the 5 s goal.
    fault!(cluster.sim, "faults/recover", [])
    back = System.monotonic_time(:millisecond)
    create_pod(cluster.sim, "default", "late", ip: "198.51.100.200")
    times = resolved_at(nodes, "late", back + 20_000, %{})
    slowest = times |> Map.values() |> Enum.max()

    assert slowest - back <= 8_000,
           "resolved after #{inspect(Map.new(times, fn {n, t} -> {n, t - back} end))} ms"
  end

  test "a peer's epmd that answers garbage or hangs holds up no connect and crashes nothing" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b"], do: Cluster.add_pod!(cluster, pod)
    # Two Ready pods whose "epmd" misbehaves: one answers junk, one accepts and never answers.
    Cluster.add_pod!(cluster, "garbage", epmd: false)
    Cluster.add_pod!(cluster, "hung", epmd: false)
    garbage = fake_epmd!(cluster, "garbage", fn -> :crypto.strong_rand_bytes(512) end)
    hung = fake_epmd!(cluster, "hung", fn -> :hang end)

    nodes = for pod <- ["pod-a", "pod-b"], do: Cluster.start_node!(cluster, "app", pod)
    # Each ask of a pod's epmd may take up to 10 s: serialized, the hung one would hold all.
    config = [connect_timeout: 10_000]
    started = System.monotonic_time(:millisecond)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node, config)
    eventually(fn -> mesh?(nodes) end, 3_000)
    pids = Enum.map(nodes, &strategy_pid/1)

    # A pod turning Ready later is connected as promptly.
    Cluster.add_pod!(cluster, "pod-c", ready: false)
    late = Cluster.start_node!(cluster, "app", "pod-c")
    Cluster.start_strategy!(cluster, late, config)
    set_running(cluster.sim, "default", "pod-c", Cluster.pod_ip(cluster, "pod-c"), true)
    eventually(fn -> mesh?([late | nodes]) end, 3_000)

    # The stand-ins were asked, and past the hung asks' timeout all is well.
    assert asks(garbage) > 0 and asks(hung) > 0
    Process.sleep(max(started + 11_000 - System.monotonic_time(:millisecond), 0))
    assert Enum.map(nodes, &strategy_pid/1) == pids
    assert {:ok, 3} = Node.eval(late, "1 + 2")
    assert mesh?([late | nodes])
  end

  test "a node whose own pod starts terminating leaves the cluster and stays out" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b"], do: Cluster.add_pod!(cluster, pod, labels: [role: "core"])
    Cluster.add_pod!(cluster, "pod-t")

    [a, b, t] =
      nodes = for pod <- ["pod-a", "pod-b", "pod-t"], do: Cluster.start_node!(cluster, "app", pod)

    # a and b watch role=core pods only: they never see pod-t, whose node joins them on its
    # own and must leave them on its own. Only t reconciles often.
    for node <- [a, b] do
      Cluster.start_strategy!(cluster, node,
        label_selector: "role=core",
        reconcile_interval: 30_000
      )
    end

    Cluster.start_strategy!(cluster, t)
    eventually(fn -> mesh?(nodes) end)
    for node <- nodes, do: record_nodedowns!(node)

    # Deleted with a grace period: the pod object stays, terminating, for 30 s.
    PodDist.SimCase.delete_pod(cluster.sim, "default", "pod-t", 30)
    eventually(fn -> disconnected?(t, [a, b]) end)
    Process.sleep(2_000)
    assert disconnected?(t, [a, b])
    assert "pod-t" in server_names(cluster)
    # t leaves `global` cleanly: a and b lose t and nobody else. (Disconnected one by one,
    # a live t makes `global` cut a from b too, until their next reconcile 30 s later.)
    assert nodedowns(a) == [t.name]
    assert nodedowns(b) == [t.name]
    assert mesh?([a, b])
  end

  test "a pod that leaves takes its node away and cuts nobody else off" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b", "pod-c", "pod-d"], do: Cluster.add_pod!(cluster, pod)

    [a, b, c, d] =
      for pod <- ["pod-a", "pod-b", "pod-c", "pod-d"],
          do: Cluster.start_node!(cluster, "app", pod)

    # Everyone sees every pod; d runs no strategy (it is connected by the others). b's
    # watch lags 1.5 s behind the others' (a proxy in its pod delays what the API says),
    # as watches of one API server do under load.
    for node <- [a, c], do: Cluster.start_strategy!(cluster, node, reconcile_interval: 30_000)
    Cluster.start_strategy!(cluster, b, reconcile_interval: 30_000, api_url: lagging_api!(b))
    eventually(fn -> mesh?([a, b, c, d]) and watch_health(b).synced end)
    for node <- [a, b, d], do: record_nodedowns!(node)

    # c sees its pod terminating and leaves through `global`; a, seeing the same, gives
    # it that moment rather than cut it off itself, which would make `global` cut third
    # nodes apart to prevent overlapping partitions. b, not knowing yet, does not call
    # back a node that hung up on it: called back, c would cut it again and again.
    PodDist.SimCase.delete_pod(cluster.sim, "default", "pod-c", 30)
    eventually(fn -> disconnected?(c, [a, b, d]) end)
    # Past b's lag and the late recall of a node that hung up (3 s), had its pod stayed.
    Process.sleep(4_000)
    assert Enum.map([a, b, d], &nodedowns/1) == [[c.name], [c.name], [c.name]]
    assert mesh?([a, b, d])

    # d does not leave by itself: the others cut it off once the grace is over, and the
    # mesh that remains is whole again right after.
    PodDist.SimCase.delete_pod(cluster.sim, "default", "pod-d", 30)
    eventually(fn -> disconnected?(d, [a, b]) and mesh?([a, b]) end)
    Process.sleep(1_500)
    assert disconnected?(d, [a, b]) and mesh?([a, b])
  end

  test "a hostile epmd's hundreds of fresh names create no atoms in a peer" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b"], do: Cluster.add_pod!(cluster, pod)
    [a, _] = nodes = for pod <- ["pod-a", "pod-b"], do: Cluster.start_node!(cluster, "app", pod)
    a_ip = Cluster.pod_ip(cluster, "pod-a")
    for node <- nodes, do: Cluster.start_strategy!(cluster, node)
    eventually(fn -> mesh?(nodes) end)

    # A pod whose epmd names one node that never answers: node a logs the failed connect,
    # which loads some code (and makes atoms) once, before we count.
    Cluster.add_pod!(cluster, "ghost", epmd: false)
    ghost = fake_epmd!(cluster, "ghost", fn -> names_reply(["ghost"]) end)
    eventually(fn -> asks(ghost, a_ip) >= 1 end)
    Process.sleep(1_000)

    Cluster.add_pod!(cluster, "evil", epmd: false)
    before = atom_count(a)
    # It answers 300 fresh names each time it is asked (within the 64 KiB an epmd answer
    # may take: a longer one is no names at all, epmd_names_test.exs).
    evil = fake_epmd!(cluster, "evil", &hostile_names/0)
    eventually(fn -> asks(evil, a_ip) >= 1 end)
    # Named once (16 names at most), it is not asked again at each reconcile (500 ms):
    # epmds are not polled.
    Process.sleep(2_000)
    assert asks(evil, a_ip) == 1
    assert asks(ghost, a_ip) == 1
    assert atom_count(a) - before < 50
    assert mesh?(nodes)
  end

  @tag timeout: 420_000
  test "200 pods changing 50 times a second for minutes: exact indexes, an intact mesh, flat memory" do
    # 2 minutes (6,000 changes) in every run; POD_DIST_LOAD_SECONDS=600 for a longer soak.
    seconds = String.to_integer(System.get_env("POD_DIST_LOAD_SECONDS", "120"))
    cluster = Cluster.start!(mode: :epmd)
    pods = for i <- 1..5, do: "node-#{i}"
    for pod <- pods, do: Cluster.add_pod!(cluster, pod, labels: [role: "node"])
    nodes = for pod <- pods, do: Cluster.start_node!(cluster, "app", pod)
    for node <- nodes, do: Cluster.start_strategy!(cluster, node, label_selector: "role=node")

    # 195 more pod objects, at addresses nothing routes to: no namespace, no node.
    for i <- 1..195 do
      name = "extra-#{String.pad_leading("#{i}", 3, "0")}"
      create_pod(cluster.sim, "default", name, ip: "203.0.113.#{i}")
    end

    eventually(fn -> mesh?(nodes) end)
    for node <- nodes, do: record_nodedowns!(node)
    for node <- nodes, do: start_full_watch!(node)

    fault!(cluster.sim, "churn", rate: 50, seconds: seconds)
    Process.sleep(div(seconds * 1_000, 5))
    early = Enum.map(nodes, &memory/1)
    Process.sleep(seconds * 1_000 - div(seconds * 1_000, 5))

    # The churn is over once the server's resourceVersion stands still.
    eventually(
      fn ->
        rv = sim_stats(cluster.sim)["resourceVersion"]
        Process.sleep(500)
        rv == sim_stats(cluster.sim)["resourceVersion"]
      end,
      30_000
    )

    server = server_index(cluster)
    assert length(server) == 200
    eventually(fn -> Enum.all?(nodes, &(full_index(&1) == server)) end, 30_000)
    # The strategies' own (role=node) views are exact too.
    selected = Enum.filter(server, fn {name, _ready} -> name in pods end)
    assert Enum.all?(nodes, &(strategy_index(&1) == selected))
    assert mesh?(nodes)
    assert Enum.all?(nodes, &(nodedowns(&1) == []))

    # Memory at the end against after the first fifth of the churn: the BEAM's, and the
    # whole process's (the native index and watch live outside the BEAM's accounting).
    for {node, {beam, rss}} <- Enum.zip(nodes, early) do
      {beam_now, rss_now} = memory(node)
      assert beam_now < beam * 1.2, "#{node.name}: BEAM memory grew from #{beam} to #{beam_now}"
      assert rss_now < rss * 1.2, "#{node.name}: resident memory grew from #{rss} to #{rss_now}"
    end
  end

  ## Helpers

  defp mesh?(nodes) do
    names = Enum.map(nodes, & &1.name)
    Enum.all?(nodes, fn n -> Cluster.connected(n) == Enum.sort(names -- [n.name]) end)
  end

  # `node` is connected to nobody, and none of `others` is connected to it.
  defp disconnected?(node, others) do
    Cluster.connected(node) == [] and Enum.all?(others, &(node.name not in Cluster.connected(&1)))
  end

  # An API URL for `node` whose answers come 1.5 s late (see PodDist.Test.LaggingProxy).
  defp lagging_api!(node) do
    code = "PodDist.Test.LaggingProxy.start(#{inspect(Cluster.api_endpoint())}, 1_500)"
    {:ok, {:ok, port}} = Node.eval(node, code)

    "https://127.0.0.1:#{port}"
  end

  # A process in `node` that records every nodedown it hears from now on.
  defp record_nodedowns!(node) do
    code = """
    pid = spawn(fn ->
      :net_kernel.monitor_nodes(true)
      loop = fn loop, downs ->
        receive do
          {:nodedown, node} -> loop.(loop, [node | downs])
          {:downs, from} -> send(from, {:downs, Enum.reverse(downs)}) && loop.(loop, downs)
        end
      end
      loop.(loop, [])
    end)
    Process.register(pid, :nodedowns)
    """

    {:ok, true} = Node.eval(node, code)
  end

  defp nodedowns(node) do
    {:ok, downs} =
      Node.eval(node, """
      send(:nodedowns, {:downs, self()})
      receive do {:downs, downs} -> downs after 5_000 -> :no_answer end
      """)

    downs
  end

  defp strategy_pid(node) do
    {:ok, pid} = Node.eval(node, "Process.whereis(:pod_dist_strategy)")
    assert is_pid(pid)
    pid
  end

  defp with_watch(node, expression) do
    {:ok, value} =
      Node.eval(node, "watch = :sys.get_state(:pod_dist_strategy).watch; #{expression}")

    value
  end

  # How `node`'s PodDist.Epmd (the distribution's view) resolves `host`.
  defp epmd_resolve(node, host) do
    {:ok, result} =
      Node.eval(node, "PodDist.Watch.resolve(PodDist.Epmd.watch(), #{inspect(host)})")

    result
  end

  # When each node first resolved `host` (monotonic ms, taken after its answer), asking
  # every node every 20 ms.
  defp resolved_at(nodes, host, deadline, seen) do
    seen =
      Enum.reduce(nodes, seen, fn node, seen ->
        if Map.has_key?(seen, node.name) or epmd_resolve(node, host) == :error,
          do: seen,
          else: Map.put(seen, node.name, System.monotonic_time(:millisecond))
      end)

    cond do
      map_size(seen) == length(nodes) ->
        seen

      System.monotonic_time(:millisecond) > deadline ->
        flunk("#{host} did not resolve everywhere: #{inspect(Map.keys(seen))}")

      true ->
        Process.sleep(20) && resolved_at(nodes, host, deadline, seen)
    end
  end

  defp watch_health(node), do: with_watch(node, "PodDist.Watch.health(watch)")
  defp index_names(node), do: with_watch(node, "Enum.map(PodDist.Watch.pods(watch), & &1.name)")

  defp server_names(cluster),
    do: cluster |> Cluster.server_pods() |> Enum.map(& &1["metadata"]["name"]) |> Enum.sort()

  # The server's pods as {name, ready}, sorted by name.
  defp server_index(cluster) do
    cluster
    |> Cluster.server_pods()
    |> Enum.map(fn pod ->
      conditions = get_in(pod, ["status", "conditions"]) || []
      {pod["metadata"]["name"], %{"type" => "Ready", "status" => "True"} in conditions}
    end)
    |> Enum.sort()
  end

  # A watch of every pod beside the strategy's (which selects role=node only), kept alive.
  defp start_full_watch!(node) do
    code = """
    options =
      PodDist.Strategy.info(:pod_dist_strategy).config
      |> PodDist.Strategy.Config.watch_options()
      |> Keyword.delete(:label_selector)

    {:ok, watch} = PodDist.Watch.start(options)
    :persistent_term.put(:full_watch, watch)
    PodDist.Watch.await_synced(watch, 10_000)
    """

    {:ok, true} = Node.eval(node, code)
  end

  defp strategy_index(node),
    do: with_watch(node, "Enum.map(PodDist.Watch.pods(watch), &{&1.name, &1.ready})")

  defp full_index(node) do
    {:ok, index} =
      Node.eval(node, """
      :persistent_term.get(:full_watch) |> PodDist.Watch.pods() |> Enum.map(&{&1.name, &1.ready}) |> Enum.sort()
      """)

    index
  end

  # Memory the node holds on to once garbage is collected: {BEAM total, resident set}.
  defp memory(node) do
    {:ok, memory} =
      Node.eval(node, """
      Enum.each(Process.list(), &:erlang.garbage_collect/1)
      [rss_kb] = Regex.run(~r/VmRSS:\\s+(\\d+) kB/, File.read!("/proc/self/status"), capture: :all_but_first)
      {:erlang.memory(:total), String.to_integer(rss_kb) * 1024}
      """)

    memory
  end

  defp atom_count(node) do
    {:ok, count} = Node.eval(node, ":erlang.system_info(:atom_count)")
    count
  end

  # A stand-in epmd on port 4369 inside `pod` (added with `epmd: false`): each request is
  # answered with `answer.()`, or held open unanswered when that is `:hang`. Returns a
  # counter of the NAMES requests it had, by asking pod (see `asks/2`).
  defp fake_epmd!(cluster, pod, answer) do
    {:ok, ip} = cluster |> Cluster.pod_ip(pod) |> String.to_charlist() |> :inet.parse_address()
    netns = Cluster.netns_path(cluster, pod)

    {:ok, listen} =
      :gen_tcp.listen(4369, [:binary, active: false, reuseaddr: true, ip: ip, netns: netns])

    asks = :counters.new(256, [])
    spawn_link(fn -> accept(listen, answer, asks) end)
    asks
  end

  defp accept(listen, answer, asks) do
    {:ok, socket} = :gen_tcp.accept(listen)

    handler =
      spawn_link(fn ->
        receive do
          :go -> serve(socket, answer, asks)
        end
      end)

    :ok = :gen_tcp.controlling_process(socket, handler)
    send(handler, :go)
    accept(listen, answer, asks)
  end

  defp serve(socket, answer, asks) do
    # NAMES is <<length::16, ?n>>; a connect's PORT_PLEASE gets the same answer.
    with {:ok, <<1::16, ?n>>} <- :gen_tcp.recv(socket, 0, 5_000),
         {:ok, {{_, _, _, from}, _port}} <- :inet.peername(socket),
         do: :counters.add(asks, from + 1, 1)

    case answer.() do
      :hang ->
        Process.sleep(:infinity)

      reply ->
        :gen_tcp.send(socket, reply)
        :gen_tcp.close(socket)
    end
  end

  # NAMES requests from every pod, or from the pod at `ip`.
  defp asks(counter), do: Enum.sum(for i <- 1..256, do: :counters.get(counter, i))

  defp asks(counter, ip) do
    {:ok, {_, _, _, last}} = ip |> String.to_charlist() |> :inet.parse_address()
    :counters.get(counter, last + 1)
  end

  # A NAMES reply (the epmd port, then one line per node) with thousands of fresh names:
  # mostly far too long, some of plausible length and characters.
  defp hostile_names do
    names =
      for i <- 1..300 do
        size = if rem(i, 3) == 0, do: 8 + rem(i, 40), else: 100 + rem(i, 200)

        Base.encode32(:crypto.strong_rand_bytes(size), case: :lower, padding: false)
        |> binary_part(0, size)
      end

    names_reply(names)
  end

  defp names_reply(names),
    do: [<<4369::32>> | Enum.map(names, &"name #{&1} at port #{20_000 + byte_size(&1)}\n")]
end
