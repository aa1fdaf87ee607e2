defmodule PodDist.Strategy.Topology do
  @moduledoc false
  # A topology's connect, disconnect and list_nodes functions, called as libcluster's
  # Cluster.Strategy.connect_nodes/4 and disconnect_nodes/4 call them: the node appended
  # to the function's arguments, never ourselves, only nodes not listed yet (connect) or
  # listed (disconnect). Unlike libcluster, connects run concurrently, each bounded by a
  # timeout and reported as a telemetry span (PodDist.Telemetry) from its own process.

  require Logger

  @enforce_keys [:name, :connect, :disconnect, :list_nodes]
  defstruct @enforce_keys

  @type t :: %__MODULE__{name: atom(), connect: call(), disconnect: call(), list_nodes: call()}
  @typep call :: {module(), atom(), list()}

  # How long leaving waits for `global` to stop reporting lost connections.
  @quiet_global_ms 1_000

  @doc "The topology of libcluster's `%Cluster.Strategy.State{}` (or a map with its keys)."
  @spec new(map()) :: t()
  def new(state) do
    %__MODULE__{
      name: state.topology,
      connect: state.connect,
      disconnect: state.disconnect,
      list_nodes: Map.get(state, :list_nodes) || {:erlang, :nodes, [:connected]}
    }
  end

  @doc "This node's own functions, for a strategy started without libcluster."
  @spec local() :: %{connect: call(), disconnect: call(), list_nodes: call()}
  def local do
    %{
      connect: {:net_kernel, :connect_node, []},
      disconnect: {:erlang, :disconnect_node, []},
      list_nodes: {:erlang, :nodes, [:connected]}
    }
  end

  @doc "The nodes connected now, as the topology's `list_nodes` says (hidden ones too, if it lists them)."
  @spec list_nodes(t()) :: [node()]
  def list_nodes(%__MODULE__{list_nodes: {mod, fun, args}}), do: apply(mod, fun, args)

  @doc """
  Connects each of `nodes` not listed yet, each in its own process (one dead IP never
  holds up the others), giving up on one after `timeout` ms (result `:timeout`).
  """
  @spec connect(t(), [node()], pos_integer()) :: :ok
  def connect(topology, nodes, timeout) do
    listed = MapSet.new(list_nodes(topology))

    for node <- Enum.uniq(nodes), node != Node.self(), node not in listed do
      Task.start(fn -> connect_one(topology, node, timeout) end)
    end

    :ok
  end

  defp connect_one(%{connect: {mod, fun, args}} = topology, node, timeout) do
    {result, _duration} =
      PodDist.Telemetry.connect(topology.name, node, fn ->
        task = Task.async(fn -> attempt(mod, fun, args ++ [node]) end)

        case Task.yield(task, timeout) || Task.shutdown(task, :brutal_kill) do
          {:ok, outcome} -> outcome
          _ -> {:ok, :timeout}
        end
      end)

    case result do
      true ->
        Logger.info("#{prefix(topology)}connected to #{node}")

      :ignored ->
        Logger.warning("#{prefix(topology)}unable to connect to #{node}: not part of network")

      other ->
        Logger.warning("#{prefix(topology)}unable to connect to #{node}: #{inspect(other)}")
    end
  end

  # A connect function that raises is reported (a telemetry exception event, a warning),
  # not left to crash the connecting process unheard.
  defp attempt(mod, fun, args) do
    {:ok, apply(mod, fun, args)}
  catch
    kind, reason -> {:exception, kind, reason, __STACKTRACE__}
  end

  @doc "Disconnects each of `nodes` that is listed, in turn."
  @spec disconnect(t(), [node()]) :: :ok
  def disconnect(%{disconnect: {mod, fun, args}} = topology, nodes) do
    listed = MapSet.new(list_nodes(topology))

    for node <- Enum.uniq(nodes), node != Node.self(), node in listed do
      started = System.monotonic_time()
      result = apply(mod, fun, args ++ [node])
      PodDist.Telemetry.disconnect(topology.name, node, result, System.monotonic_time() - started)

      case result do
        true -> Logger.info("#{prefix(topology)}disconnected from #{node}")
        false -> Logger.info("#{prefix(topology)}disconnected from #{node} (already)")
        other -> Logger.warning("#{prefix(topology)}disconnect from #{node}: #{inspect(other)}")
      end
    end

    :ok
  end

  @doc """
  Makes our `global` stop reporting lost connections, as it does when the node stops
  (`init:stop/0` sends it the same message), waiting for it up to a second.
  """
  # Leaving disconnects every node outside our pod, one by one. A node whose `global`
  # still prevents overlapping partitions would tell the others that it lost each peer,
  # and they would cut that peer too: the cluster left behind would fall apart. Our pod
  # is terminating, its nodes are on their way out: `global` stays so for the rest of
  # this VM's life. A release without this message ignores it (the wait times out).
  @spec quiet_global() :: :ok
  def quiet_global do
    with true <- Node.alive?(), pid when is_pid(pid) <- Process.whereis(:global_name_server) do
      ref = make_ref()
      send(pid, {:prepare_shutdown, self(), ref})

      receive do
        {^ref, :ok} -> :ok
      after
        @quiet_global_ms -> :ok
      end
    end

    :ok
  end

  defp prefix(topology), do: "PodDist.Strategy #{topology.name}: "
end
