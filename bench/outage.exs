# Recovery from an API outage: real BEAM nodes, each in its own pod (a network namespace),
# each following the pods through its PodDist.Epmd watch. A trial makes the API answer
# 503 to everything for `--seconds`, counting the requests the nodes send meanwhile; then
# it ends the outage, adds a pod at once, and takes the time until each node resolves
# that pod's name.
#
#     MIX_ENV=test mix run bench/outage.exs -- --nodes 3 --seconds 60 --trials 3
#
# With `--forbidden`, the API answers 403 instead (the Role is missing) and each trial
# boots new nodes into it, as a first deploy does: `--seconds` after the last one booted
# the Role is granted, and a pod added at once; the time is from the grant.
#
# (MIX_ENV=test: it uses the multi-pod harness in test/support; needs root.)

alias PodDist.Test.{Cluster, Node}

%{nodes: count, seconds: seconds, trials: trials, forbidden: forbidden} =
  PodDist.Test.Bench.options(nodes: 3, seconds: 60, trials: 3, forbidden: false)

defmodule OutageBench do
  import PodDist.SimCase, only: [fault!: 3, sim_stats: 1, create_pod: 4, eventually: 2]

  def resolves?(node, host) do
    {:ok, result} =
      Node.eval(node, "PodDist.Watch.resolve(PodDist.Epmd.watch(), #{inspect(host)})")

    match?({:ok, _}, result)
  end

  # One trial: requests per node per minute during the outage (all of it, and from a
  # quarter of the way in, once the first quick retries are past), ms from the API's
  # return (and the pod's creation) to each node resolving the pod, the requests by kind.
  def trial(cluster, nodes, seconds, n) do
    sim = cluster.sim
    eventually(fn -> sim_stats(sim)["open_watches"] == length(nodes) end, 30_000)
    fault!(sim, "stats/reset", [])
    started = System.monotonic_time(:millisecond)
    # Ended by hand, so that its end is known to the millisecond.
    fault!(sim, "faults/unavailable", seconds: seconds * 10)
    Process.sleep(div(seconds * 1_000, 4))
    settled = {System.monotonic_time(:millisecond), requests(sim)}
    Process.sleep(max(started + seconds * 1_000 - System.monotonic_time(:millisecond), 0))
    by_kind = sim_stats(sim)["requests"]
    requests = by_kind |> Map.values() |> Enum.sum()
    fault!(sim, "faults/recover", [])
    back = System.monotonic_time(:millisecond)
    outage = back - started
    {settled_at, settled_requests} = settled
    steady = (requests - settled_requests) / length(nodes) / ((back - settled_at) / 60_000)
    host = "late-#{n}"
    create_pod(sim, "default", host, ip: "198.51.100.#{200 + n}")
    times = until_resolved(nodes, host, back, %{})

    %{
      rate: requests / length(nodes) / (outage / 60_000),
      steady: steady,
      times: times,
      by_kind: by_kind
    }
  end

  defp requests(sim), do: sim_stats(sim)["requests"] |> Map.values() |> Enum.sum()

  # One trial of --forbidden: requests per node per minute during the 403s, ms from the
  # Role's grant (and the pod's creation) to each node resolving the pod, the requests
  # by kind. The nodes boot while the API refuses them, and are stopped afterwards.
  def forbidden_trial(cluster, count, seconds, n) do
    sim = cluster.sim
    fault!(sim, "rbac", namespaces: "elsewhere")

    nodes =
      for i <- 1..count do
        Cluster.add_pod!(cluster, "boot-#{n}-#{i}")
        Cluster.start_node!(cluster, "app", "boot-#{n}-#{i}")
      end

    fault!(sim, "stats/reset", [])
    started = System.monotonic_time(:millisecond)
    Process.sleep(seconds * 1_000)
    by_kind = sim_stats(sim)["requests"]
    requests = by_kind |> Map.values() |> Enum.sum()
    fault!(sim, "rbac", namespaces: "*")
    back = System.monotonic_time(:millisecond)
    window = back - started
    host = "late-#{n}"
    create_pod(sim, "default", host, ip: "198.51.100.#{200 + n}")
    times = until_resolved(nodes, host, back, %{})
    Enum.each(nodes, &Node.stop/1)

    %{
      rate: requests / length(nodes) / (window / 60_000),
      steady: nil,
      times: times,
      by_kind: by_kind
    }
  end

  # When each node first resolves `host`, in ms since `since` (polled every 50 ms).
  defp until_resolved(nodes, host, since, seen) do
    now = System.monotonic_time(:millisecond)

    seen =
      for node <- nodes,
          not Map.has_key?(seen, node),
          resolves?(node, host),
          into: seen,
          do: {node, now - since}

    cond do
      map_size(seen) == length(nodes) -> Map.values(seen)
      now - since > 60_000 -> raise "#{host} not resolvable in every node after 60 s"
      true -> Process.sleep(50) && until_resolved(nodes, host, since, seen)
    end
  end
end

cluster = Cluster.start!(mode: :epmd, cleanup: :manual)

try do
  results =
    if forbidden do
      for n <- 1..trials, do: OutageBench.forbidden_trial(cluster, count, seconds, n)
    else
      nodes =
        for i <- 1..count do
          Cluster.add_pod!(cluster, "pod-#{i}")
          Cluster.start_node!(cluster, "app", "pod-#{i}")
        end

      for n <- 1..trials, do: OutageBench.trial(cluster, nodes, seconds, n)
    end

  IO.puts(
    if forbidden,
      do: "403 at boot: #{seconds} s of 403s after boot, #{count} nodes, #{trials} trials",
      else: "outage: #{seconds} s of 503s, #{count} nodes, #{trials} trials"
  )

  for {trial, n} <- Enum.with_index(results, 1) do
    steady = if trial.steady, do: ", #{Float.round(trial.steady, 1)} from a quarter in", else: ""

    IO.puts(
      "  trial #{n}: #{Float.round(trial.rate, 1)} requests/min per node during the outage#{steady} " <>
        "(#{inspect(trial.by_kind)}); API back (Role granted) + pod added -> resolvable, per node: " <>
        "#{Enum.map_join(Enum.sort(trial.times), ", ", &"#{&1} ms")}"
    )
  end

  range = fn values ->
    "#{Float.round(Enum.min(values), 1)} to #{Float.round(Enum.max(values), 1)}"
  end

  times = results |> Enum.flat_map(& &1.times) |> Enum.sort()
  median = Enum.at(times, div(length(times), 2))
  steady = for %{steady: s} <- results, s, do: s

  IO.puts(
    "  requests/min per node: #{range.(Enum.map(results, & &1.rate))}" <>
      if(steady == [], do: "", else: " (from a quarter in: #{range.(steady)})") <>
      "; back -> resolvable in a node: median #{median} ms, max #{List.last(times)} ms " <>
      "(#{length(times)} node-trials)"
  )
after
  Cluster.stop(cluster)
end
