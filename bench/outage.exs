# Recovery from an API outage: real BEAM nodes, each in its own pod (a network namespace),
# each following the pods through its KubeDist.Epmd watch. A trial makes the API answer
# 503 to everything for `--seconds`, counting the requests the nodes send meanwhile; then
# it ends the outage, adds a pod at once, and takes the time until every node resolves
# that pod's name.
#
#     MIX_ENV=test mix run bench/outage.exs -- --nodes 3 --seconds 60 --trials 3
#
# (MIX_ENV=test: it uses the multi-pod harness in test/support; needs root.)

alias KubeDist.Test.{Cluster, Node}

{opts, _, _} =
  OptionParser.parse(Enum.reject(System.argv(), &(&1 == "--")),
    strict: [nodes: :integer, seconds: :integer, trials: :integer]
  )

count = Keyword.get(opts, :nodes, 3)
seconds = Keyword.get(opts, :seconds, 60)
trials = Keyword.get(opts, :trials, 3)

defmodule OutageBench do
  import KubeDist.SimCase, only: [fault!: 3, sim_stats: 1, create_pod: 4, eventually: 2]

  def resolves?(node, host) do
    {:ok, result} =
      Node.eval(node, "KubeDist.Watch.resolve(KubeDist.Epmd.watch(), #{inspect(host)})")

    result != :error
  end

  # One trial: {requests per node per minute during the outage, ms from the API's
  # return (and the pod's creation) to the last node resolving the pod}.
  def trial(cluster, nodes, seconds, n) do
    sim = cluster.sim
    eventually(fn -> sim_stats(sim)["open_watches"] == length(nodes) end, 30_000)
    fault!(sim, "stats/reset", [])
    started = System.monotonic_time(:millisecond)
    # Ended by hand, so that its end is known to the millisecond.
    fault!(sim, "faults/unavailable", seconds: seconds * 10)
    Process.sleep(seconds * 1_000)
    requests = sim_stats(sim)["requests"] |> Map.values() |> Enum.sum()
    fault!(sim, "faults/recover", [])
    back = System.monotonic_time(:millisecond)
    outage = back - started
    host = "late-#{n}"
    create_pod(sim, "default", host, ip: "198.51.100.#{200 + n}")
    eventually(fn -> Enum.all?(nodes, &resolves?(&1, host)) end, 60_000)
    resolved = System.monotonic_time(:millisecond) - back
    {requests / length(nodes) / (outage / 60_000), resolved}
  end
end

cluster = Cluster.start!(mode: :epmd, cleanup: :manual)

try do
  nodes =
    for i <- 1..count do
      Cluster.add_pod!(cluster, "pod-#{i}")
      Cluster.start_node!(cluster, "app", "pod-#{i}")
    end

  results = for n <- 1..trials, do: OutageBench.trial(cluster, nodes, seconds, n)

  IO.puts("outage: #{seconds} s of 503s, #{count} nodes, #{trials} trials")

  for {{rate, resolved}, n} <- Enum.with_index(results, 1) do
    IO.puts(
      "  trial #{n}: #{Float.round(rate, 1)} requests/min per node during the outage; " <>
        "API back + pod added -> resolvable in every node: #{resolved} ms"
    )
  end

  {rates, times} = Enum.unzip(results)

  IO.puts(
    "  requests/min per node: #{Float.round(Enum.min(rates), 1)} to #{Float.round(Enum.max(rates), 1)}; " <>
      "back -> resolvable everywhere: #{Enum.min(times)} to #{Enum.max(times)} ms"
  )
after
  Cluster.stop(cluster)
end
