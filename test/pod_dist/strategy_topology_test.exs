defmodule PodDist.Strategy.TopologyTest do
  # The topology's functions called as libcluster's Cluster.Strategy helpers call them.
  use ExUnit.Case, async: true

  # Connects log from their own processes, after their telemetry.
  @moduletag :capture_log

  alias PodDist.Strategy.Topology

  defmodule Calls do
    def connect(test, :slow@x), do: send(test, {:connect, :slow@x}) && Process.sleep(:infinity)
    def connect(test, node), do: send(test, {:connect, node}) && true
    def disconnect(test, node), do: send(test, {:disconnect, node}) && true
    def list_nodes(listed), do: listed
  end

  defp topology(listed) do
    Topology.new(%{
      topology: :t,
      connect: {Calls, :connect, [self()]},
      disconnect: {Calls, :disconnect, [self()]},
      list_nodes: {Calls, :list_nodes, [listed]}
    })
  end

  test "connects the nodes not listed (the node appended to the arguments), never ourselves" do
    :ok = Topology.connect(topology([:a@x]), [:a@x, :b@x, :b@x, Node.self()], 5_000)
    assert_receive {:connect, :b@x}
    refute_receive {:connect, _}, 200
  end

  test "disconnects only the nodes listed, never ourselves" do
    :ok = Topology.disconnect(topology([:a@x, Node.self()]), [:a@x, :b@x, Node.self()])
    assert_receive {:disconnect, :a@x}
    refute_receive {:disconnect, _}, 200
  end

  test "a connect that hangs is given up after the timeout, without holding up the others" do
    test = self()
    id = {__MODULE__, make_ref()}
    stop = [:pod_dist, :strategy, :connect, :stop]
    handler = fn _, _, %{node: node, result: result}, _ -> send(test, {:stop, node, result}) end
    :ok = :telemetry.attach(id, stop, handler, nil)
    on_exit(fn -> :telemetry.detach(id) end)

    :ok = Topology.connect(topology([]), [:slow@x, :b@x], 100)
    assert_receive {:connect, :slow@x}
    assert_receive {:stop, :b@x, true}, 5_000
    assert_receive {:stop, :slow@x, :timeout}, 5_000
  end

  test "without libcluster: this node's own functions" do
    assert %{list_nodes: {:erlang, :nodes, [:connected]}} = Topology.local()
    assert Topology.list_nodes(Topology.new(Map.put(Topology.local(), :topology, :t))) == []
  end
end
