defmodule PodDist.TelemetryNetnsTest do
  # Every event PodDist.Telemetry documents, received by a handler attached in a real
  # node that clusters with another through PodDist.Strategy, with the documented keys.
  # (The :telemetry library cannot be fetched here: the nodes run the stand-in in
  # test/support/telemetry.ex, which keeps its contract; libcluster's presence is
  # stood in for the same way, in test/support/libcluster_state.ex.) Needs root.
  use ExUnit.Case, async: false

  import PodDist.SimCase, only: [eventually: 1, fault!: 3, fault!: 2]

  alias PodDist.Test.{Cluster, Node}

  @moduletag :netns

  # What each event must carry (beyond that, handlers may rely on nothing).
  @events %{
    [:pod_dist, :strategy, :connect, :start] =>
      {[:monotonic_time, :system_time], [:node, :topology, :telemetry_span_context]},
    [:pod_dist, :strategy, :connect, :stop] =>
      {[:monotonic_time, :duration], [:node, :topology, :telemetry_span_context, :result]},
    [:pod_dist, :strategy, :connect, :exception] =>
      {[:monotonic_time, :duration],
       [:node, :topology, :telemetry_span_context, :kind, :reason, :stacktrace]},
    [:pod_dist, :strategy, :disconnect] => {[:duration], [:node, :topology, :result]},
    [:pod_dist, :strategy, :discovery] => {[:nodes], [:pod, :change, :nodes, :topology]},
    [:pod_dist, :strategy, :api_error] => {[], [:message, :topology]},
    [:pod_dist, :watch, :sync] => {[:system_time, :pods], [:api_url, :namespaces]},
    [:pod_dist, :watch, :relist] => {[:system_time, :pods], [:api_url, :namespaces]},
    [:pod_dist, :watch, :api_error] =>
      {[:system_time, :errors], [:api_url, :namespaces, :error, :status, :message]},
    [:pod_dist, :watch, :restart] =>
      {[:system_time, :restarts], [:api_url, :namespaces, :reason]},
    [:libcluster, :connect_node, :ok] => {[:duration], [:node, :topology]},
    [:libcluster, :connect_node, :error] => {[:duration], [:node, :topology, :reason]},
    [:libcluster, :disconnect_node, :ok] => {[:duration], [:node, :topology]}
  }

  test "a handler attached in a node receives every event, with the documented keys" do
    cluster = Cluster.start!(mode: :epmd)
    for pod <- ["pod-a", "pod-b"], do: Cluster.add_pod!(cluster, pod, labels: [app: "tm"])
    a = Cluster.start_node!(cluster, "app", "pod-a")
    b = Cluster.start_node!(cluster, "app", "pod-b")

    {:ok, :ok} =
      Node.eval(a, """
      {:ok, _} = Agent.start(fn -> [] end, name: :events)
      record = fn event, measurements, metadata, _ ->
        Agent.update(:events, &[{event, measurements, metadata} | &1])
      end
      :telemetry.attach_many("test", #{inspect(Map.keys(@events))}, record, nil)
      """)

    # Its own selector: the strategy's watch is a new one (the epmd module's, started at
    # boot, synced before the handler was there).
    Cluster.start_strategy!(cluster, a, label_selector: "app=tm")

    sync = await(a, [:pod_dist, :watch, :sync])
    assert sync.measurements.pods == 2
    assert sync.metadata.namespaces == ["default"]

    stop = await(a, [:pod_dist, :strategy, :connect, :stop])
    assert %{node: :"app@pod-b", result: true, topology: :pod_dist} = stop.metadata
    start = await(a, [:pod_dist, :strategy, :connect, :start])
    assert start.metadata.telemetry_span_context == stop.metadata.telemetry_span_context
    assert stop.measurements.duration > 0
    assert await(a, [:libcluster, :connect_node, :ok]).metadata.node == :"app@pod-b"

    joined = await(a, [:pod_dist, :strategy, :discovery], &(&1.metadata.pod == "pod-b"))
    assert %{change: :joined, nodes: [:"app@pod-b"]} = joined.metadata
    assert joined.measurements.nodes == 1

    # A topology whose connect function raises: the span ends in an exception.
    {:ok, _} =
      Node.eval(a, """
      config = :sys.get_state(:pod_dist_strategy).core.config
      {:ok, pid} =
        PodDist.Strategy.start_link([
          %{
            topology: :failing,
            connect: {PodDist.Test.FailingConnect, :connect, []},
            disconnect: {:erlang, :disconnect_node, []},
            list_nodes: {PodDist.Test.FailingConnect, :list_nodes, []},
            config: Keyword.put(config, :reconcile_interval, 60_000),
            meta: nil
          }
        ])
      Process.unlink(pid)
      """)

    exception = await(a, [:pod_dist, :strategy, :connect, :exception])
    assert %{kind: :error, reason: %RuntimeError{}, topology: :failing} = exception.metadata

    assert %{reason: {:error, %RuntimeError{}}} =
             await(a, [:libcluster, :connect_node, :error]).metadata

    # A 410: the watch lists everything again.
    fault!(cluster.sim, "faults/cut-watches", expired: true)
    assert await(a, [:pod_dist, :watch, :relist]).measurements.pods == 2

    # Access denied (met when the cut watches are made again): the watch says so with the
    # status, the strategy too.
    fault!(cluster.sim, "rbac", namespaces: "elsewhere")
    fault!(cluster.sim, "faults/cut-watches")
    error = await(a, [:pod_dist, :watch, :api_error])
    assert %{error: :forbidden, status: 403} = error.metadata
    assert error.metadata.message =~ "403"
    assert await(a, [:pod_dist, :strategy, :api_error]).metadata.message =~ "403"
    fault!(cluster.sim, "rbac", namespaces: "*")

    # The native watch dies at its next event, and is restarted.
    {:ok, :ok} =
      Node.eval(a, """
      watch = :sys.get_state(:pod_dist_strategy).watch
      PodDist.Native.panic_watch_for_test(watch.resource)
      """)

    Cluster.add_pod!(cluster, "pod-c", labels: [app: "tm"])
    restart = await(a, [:pod_dist, :watch, :restart])
    assert restart.measurements.restarts == 1
    assert restart.metadata.reason =~ "injected by a test"

    # Deleted with a grace period: the pod terminates, which is evidence (a force-deleted
    # pod just vanishes, and its nodes are left to go by themselves).
    PodDist.SimCase.delete_pod(cluster.sim, "default", "pod-b", 30)
    assert await(a, [:pod_dist, :strategy, :disconnect]).metadata.node == :"app@pod-b"
    assert await(a, [:libcluster, :disconnect_node, :ok]).metadata.node == :"app@pod-b"

    # Every event came with at least the keys its table row names.
    {:ok, events} = Node.eval(a, "Agent.get(:events, & &1)")

    for {event, measurements, metadata} <- events do
      {measurement_keys, metadata_keys} = Map.fetch!(@events, event)
      assert Enum.all?(measurement_keys, &Map.has_key?(measurements, &1)), inspect(event)
      assert Enum.all?(metadata_keys, &Map.has_key?(metadata, &1)), inspect(event)
    end

    assert Enum.sort(Map.keys(@events)) ==
             events |> Enum.map(&elem(&1, 0)) |> Enum.uniq() |> Enum.sort()

    Node.stop(b)
  end

  # The first `event` the node's handler received (for which `match?` holds).
  defp await(node, event, match? \\ fn _ -> true end) do
    eventually(fn ->
      {:ok, events} = Node.eval(node, "Agent.get(:events, & &1)")

      for(
        {^event, measurements, metadata} <- Enum.reverse(events),
        do: %{measurements: measurements, metadata: metadata}
      )
      |> Enum.find(match?)
    end)
  end
end
