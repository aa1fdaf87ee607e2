# Join latency: a pod turns Ready in the API -> every existing node is connected to it.
# Real BEAM nodes in network namespaces (needs root), PodDist.Strategy in each, against
# a reference poller that LISTs every 5 s and connects, as libcluster's Kubernetes
# strategy does by default.
#
#     MIX_ENV=test mix run bench/join.exs -- --nodes 3 --trials 50 --poll-trials 10
#
# `--source slices`: the strategies read the EndpointSlices of a headless Service (and
# may read nothing else), so a join also waits for the endpoint-slice controller's write.
#
# (MIX_ENV=test: it uses the multi-pod harness in test/support.)

alias PodDist.Test.{Cluster, Node}

%{nodes: existing, trials: trials, poll_trials: poll_trials, source: source} =
  PodDist.Test.Bench.options(nodes: 3, trials: 50, poll_trials: 10, source: "pods")

defmodule JoinBench do
  @recorder """
  spawn(fn ->
    Process.register(self(), :join_recorder)
    :net_kernel.monitor_nodes(true)
    # Scheduler safety: every long schedule over 1 ms in this node, kept for the end.
    :erlang.system_monitor(self(), [{:long_schedule, 1}])
    loop = fn loop, seen, long ->
      receive do
        {:nodeup, node} -> loop.(loop, Map.put_new(seen, node, System.os_time(:microsecond)), long)
        {:monitor, _, :long_schedule, info} -> loop.(loop, seen, [info | long])
        {:get, from} -> send(from, {:seen, seen}) && loop.(loop, seen, long)
        {:long, from} -> send(from, {:long, long}) && loop.(loop, seen, long)
        :reset -> loop.(loop, %{}, long)
        _ -> loop.(loop, seen, long)
      end
    end
    loop.(loop, %{}, [])
  end)
  :ok
  """

  def install_recorder(node), do: {:ok, :ok} = Node.eval(node, @recorder)

  def seen(node) do
    {:ok, seen} =
      Node.eval(node, "send(:join_recorder, {:get, self()}); receive do {:seen, s} -> s end")

    seen
  end

  def long_schedules(node) do
    {:ok, long} =
      Node.eval(node, "send(:join_recorder, {:long, self()}); receive do {:long, l} -> l end")

    long
  end

  def reset(node), do: Node.eval(node, "send(:join_recorder, :reset)")

  # The reference: LIST every 5 s, connect to every ready pod's app@<pod-name>.
  def start_poller(cluster, node) do
    code = """
    {:ok, _} = Application.ensure_all_started(:inets)
    {:ok, _} = Application.ensure_all_started(:ssl)
    token = String.to_charlist("Bearer " <> File.read!(#{inspect(Path.join(cluster.sim.dir, "serviceaccount/token"))}))
    url = ~c"https://198.51.100.254:6443/api/v1/namespaces/default/pods"
    # The certificate names the API by DNS (kubernetes.default.svc), as in a cluster.
    ssl = [verify: :verify_peer, server_name_indication: ~c"kubernetes.default.svc", cacertfile: #{inspect(String.to_charlist(Path.join(cluster.sim.dir, "ca.crt")))}]
    poll = fn poll ->
      with {:ok, {{_, 200, _}, _, body}} <- :httpc.request(:get, {url, [{~c"authorization", token}]}, [ssl: ssl], body_format: :binary) do
        for pod <- PodDist.Test.JSON.decode!(body)["items"],
            Enum.any?(pod["status"]["conditions"] || [], &(&1["type"] == "Ready" and &1["status"] == "True")),
            do: Node.connect(:"app@\#{pod["metadata"]["name"]}")
      end
      Process.sleep(5_000)
      poll.(poll)
    end
    spawn(fn -> poll.(poll) end)
    :ok
    """

    {:ok, :ok} = Node.eval(node, code)
  end

  # One trial: flip the subject Ready, wait until every node saw it come up.
  # `gone_ms`: how long the deleted subject takes to be gone for the strategies (the
  # slice source holds a vanished endpoint for its 2 s grace: a node dropped meanwhile is
  # reconnected, and the next trial would see no nodeup).
  def trial(cluster, nodes, subject, ip, timeout_ms, jitter_ms, gone_ms) do
    Enum.each(nodes, &reset/1)
    # Against a poller, start at a random point of its cycle, or every trial would
    # start right after a poll and measure the worst case.
    if jitter_ms > 0, do: Process.sleep(:rand.uniform(jitter_ms))
    started = System.os_time(:microsecond)
    PodDist.SimCase.set_running(cluster.sim, "default", "subject", ip, true)
    deadline = System.monotonic_time(:millisecond) + timeout_ms
    latency = wait_all(nodes, subject, started, deadline)

    # Back to "not there": the Pod object goes (strategies disconnect it), then returns unready.
    Cluster.delete_pod!(cluster, "subject")
    Process.sleep(gone_ms)
    for node <- nodes, do: Node.eval(node, "Node.disconnect(#{inspect(subject)})")

    PodDist.SimCase.create_pod(cluster.sim, "default", "subject",
      ip: ip,
      ready: false,
      labels: [app: "join"]
    )

    Process.sleep(200)
    latency
  end

  defp wait_all(nodes, subject, started, deadline) do
    times = Enum.map(nodes, &Map.get(seen(&1), subject))

    cond do
      Enum.all?(times) -> Enum.max(times) - started
      System.monotonic_time(:millisecond) > deadline -> :timeout
      true -> Process.sleep(10) && wait_all(nodes, subject, started, deadline)
    end
  end

  def summary(label, samples) do
    ok = samples |> Enum.reject(&(&1 == :timeout)) |> Enum.sort()
    at = fn p -> Enum.at(ok, min(length(ok) - 1, round(p / 100 * (length(ok) - 1)))) end
    ms = fn us -> Float.round(us / 1000, 1) end

    IO.puts(
      "  #{label}: #{length(ok)}/#{length(samples)} joined; p50 #{ms.(at.(50))} ms, p99 #{ms.(at.(99))} ms, max #{ms.(List.last(ok))} ms"
    )

    at.(99)
  end
end

cluster = Cluster.start!(mode: :epmd, cleanup: :manual)

# The slice source: a headless Service selecting the pods, and a Role that grants only
# its EndpointSlices (the poller below lists pods, so it gets pods back for its turn).
source_config =
  case source do
    "pods" ->
      []

    "slices" ->
      PodDist.SimCase.fault!(cluster.sim, "rbac",
        namespaces: "*",
        resources: "endpointslices.discovery.k8s.io"
      )

      service = %{
        metadata: %{name: "join-dist"},
        spec: %{
          clusterIP: "None",
          publishNotReadyAddresses: true,
          selector: %{app: "join"},
          ports: [%{name: "epmd", port: 4369}]
        }
      }

      {:ok, 201, _} =
        PodDist.SimCase.api(cluster.sim, :post, "/api/v1/namespaces/default/services", service)

      [service: "join-dist"]
  end

# The nodes' PodDist.Epmd reads the same source as their strategies.
node_env = if source == "slices", do: [{"POD_DIST_SERVICE", "join-dist"}], else: []
gone_ms = if source == "slices", do: 2_500, else: 0

try do
  nodes =
    for i <- 1..existing do
      Cluster.add_pod!(cluster, "pod-#{i}", labels: [app: "join"])
      Cluster.start_node!(cluster, "app", "pod-#{i}", env: node_env)
    end

  ip = Cluster.add_pod!(cluster, "subject", ready: false, labels: [app: "join"])
  subject = Cluster.start_node!(cluster, "app", "subject", env: node_env)
  Enum.each(nodes, &JoinBench.install_recorder/1)

  for node <- nodes,
      do: Cluster.start_strategy!(cluster, node, [reconcile_interval: 30_000] ++ source_config)

  Process.sleep(1_000)

  watch =
    for _ <- 1..trials, do: JoinBench.trial(cluster, nodes, subject.name, ip, 10_000, 0, gone_ms)

  IO.puts("join (#{source} source): pod Ready -> all #{existing} existing nodes connected")
  p99_watch = JoinBench.summary("PodDist.Strategy (watch)", watch)
  long = Enum.flat_map(nodes, &JoinBench.long_schedules/1)
  # The NIFs are what must never hold a scheduler; with more BEAMs than cores, the OS
  # preempting a scheduler thread shows up as long schedules anywhere, ours included.
  nifs = Enum.filter(long, &(inspect(&1) =~ "PodDist.Native"))
  elixir = Enum.filter(long, &(inspect(&1) =~ "PodDist")) -- nifs

  IO.puts(
    "  long_schedule > 1 ms in the existing nodes: #{length(long)} in all, #{length(nifs)} in PodDist.Native" <>
      ", #{length(elixir)} in PodDist's Elixir code #{inspect(elixir)}"
  )

  # --poll-trials 0 skips the poller, whose code never changes and whose trials are slow.
  if poll_trials > 0 do
    if source == "slices",
      do: PodDist.SimCase.fault!(cluster.sim, "rbac", namespaces: "*", resources: "pods")

    for node <- nodes, do: Node.eval(node, "GenServer.stop(:pod_dist_strategy)")
    for node <- nodes, do: JoinBench.start_poller(cluster, node)

    poll =
      for _ <- 1..poll_trials,
          do: JoinBench.trial(cluster, nodes, subject.name, ip, 12_000, 5_000, gone_ms)

    p99_poll = JoinBench.summary("5 s LIST poller (libcluster's default)", poll)
    IO.puts("  ratio of p99s: #{Float.round(p99_poll / max(p99_watch, 1), 1)}x")
  end
after
  Cluster.stop(cluster)
end
