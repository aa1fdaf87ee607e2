defmodule PodDist.Strategy do
  @moduledoc """
  A libcluster strategy driven by a Kubernetes watch: pods that become eligible are
  connected within milliseconds, deleted pods are disconnected, and nothing is polled.

      # config/runtime.exs
      config :libcluster,
        topologies: [
          k8s: [
            strategy: PodDist.Strategy,
            config: [namespaces: ["prod"], label_selector: "app=shop"]
          ]
        ]

  It also runs without libcluster, as any child of your supervision tree:

      children = [{PodDist.Strategy, label_selector: "app=shop"}]

  Every node of every eligible pod is connected. Our node connects nobody until its pod
  is eligible, and leaves for good once its pod terminates. Membership changes on
  evidence, never on absence; a Kubernetes failure never disconnects anybody: it is
  logged once with what to fix, and retried. The options: `PodDist.Strategy.Config`;
  the rules: `PodDist.Strategy.Core`; the events: `PodDist.Telemetry`.
  """
  use GenServer
  require Logger

  alias PodDist.Strategy.{Config, Core, Nodes, Topology}
  alias PodDist.Watch

  @typedoc "libcluster's `%Cluster.Strategy.State{}` (or a map with the same keys)."
  @type state :: %{
          topology: atom(),
          connect: {module(), atom(), list()},
          disconnect: {module(), atom(), list()},
          list_nodes: {module(), atom(), list()},
          config: keyword(),
          meta: term()
        }

  @doc """
  Starts the strategy: with `[state]` as libcluster's `Cluster.Supervisor` does, or with
  a keyword config (then connect and disconnect use `:net_kernel` and `:erlang`).
  """
  @spec start_link([state()] | keyword()) :: GenServer.on_start()
  def start_link([%{topology: _, connect: _, disconnect: _, config: _} = state]),
    do: GenServer.start_link(__MODULE__, state)

  def start_link(config) when is_list(config) do
    {name, config} = Keyword.pop(config, :name)
    {topology, config} = Keyword.pop(config, :topology, :pod_dist)
    state = Map.merge(Topology.local(), %{topology: topology, config: config, meta: nil})
    GenServer.start_link(__MODULE__, state, if(name, do: [name: name], else: []))
  end

  @doc """
  What a running strategy knows (`t:PodDist.Strategy.Core.info/0`): `PodDist.Doctor`
  reads its config and the names of each pod from here.
  """
  @spec info(GenServer.server(), timeout()) :: Core.info()
  def info(server, timeout \\ 5_000), do: GenServer.call(server, :info, timeout)

  @doc "The strategies running in this node (`PodDist.doctor/0` asks them for their config)."
  @spec running() :: [pid()]
  def running do
    for {pid, _topology} <- Registry.lookup(PodDist.Registry, __MODULE__), do: pid
  rescue
    # pod_dist's application not started (`mix run --no-start`, a bare code path).
    ArgumentError -> []
  end

  @impl true
  def init(state) do
    Logger.metadata(topology: state.topology)
    register(state.topology)
    # A closure: the config (the token too) stays out of crash reports.
    s = %{topology: Topology.new(state), core: Core.new(state.topology), watch: nil, tag: nil}
    start(Map.put(s, :start, {:config, fn -> state.config end}))
  end

  defp register(topology) do
    Registry.register(PodDist.Registry, __MODULE__, topology)
  rescue
    ArgumentError -> :not_registered
  end

  # Loads the NIF and checks the config (once), then starts the watch. A config error
  # is a mistake to fix before deploying: said at once, by stopping.
  defp start(%{start: {:config, config}} = s) do
    with :ok <- PodDist.Epmd.load_nif(),
         {:ok, config} <- Config.validate(config.()) do
      options = Config.watch_options(config)
      own_host = config[:own_pod] || PodDist.NodeName.host(Node.self())
      # The token lives on in the watch only.
      core = Core.configure(s.core, Keyword.delete(config, :token), own_host)
      start(%{s | core: core, start: {:watch, fn -> Watch.start(options) end}})
    else
      {:error, %{detail: detail, fix: fix}} ->
        {:ok, run(s, {:nif_unavailable, detail, fix})}

      {:error, reason} ->
        {:stop, {:invalid_config, reason}}
    end
  end

  defp start(%{start: {:watch, start}} = s) do
    with {:ok, watch} <- start.() do
      tag = Watch.subscribe(watch)
      await_synced(watch, tag)
      # Every nodeup is judged against the pods (hidden ones too: `global` connects
      # nodes transitively); a nodedown's reason tells a hang-up from a cut.
      if Node.alive?(),
        do: :net_kernel.monitor_nodes(true, [{:node_type, :all}, :nodedown_reason])

      {:ok, run(%{s | watch: watch, tag: tag}, :started)}
    else
      {:error, reason} -> {:ok, run(s, {:watch_unavailable, reason})}
    end
  end

  # `:synced` comes once, to those subscribed when the list is in: a watch that synced
  # just as we subscribed may not have told us.
  defp await_synced(watch, tag) do
    strategy = self()
    synced? = fn -> Watch.await_synced(watch, 60_000) end

    spawn_link(fn ->
      if Enum.find(Stream.repeatedly(synced?), & &1),
        do: send(strategy, {:pod_dist, tag, :synced})
    end)
  end

  @impl true
  def handle_call(:info, _from, s), do: {:reply, Core.info(s.core), s}

  @impl true
  def handle_info(:start, s) do
    case start(s) do
      {:ok, s} -> {:noreply, s}
      {:stop, reason} -> {:stop, reason, s}
    end
  end

  def handle_info({:pod_dist, tag, event}, %{tag: tag} = s), do: {:noreply, run(s, event)}
  def handle_info({:core, event}, s), do: {:noreply, run(s, event)}

  def handle_info({:nodeup, node, _info}, s) do
    pod = with {:ok, _ip, pod} <- Watch.lookup(s.watch, PodDist.NodeName.host(node)), do: pod
    {:noreply, run(s, {:nodeup, node, if(is_map(pod), do: pod)})}
  end

  def handle_info({:nodedown, node, info}, s),
    do: {:noreply, run(s, {:nodedown, node, info[:nodedown_reason]})}

  def handle_info(_other, s), do: {:noreply, s}

  # Hands the event to the core, then carries out what it decided, in order.
  defp run(s, event) do
    {core, effects} = Core.handle(s.core, event)

    Enum.reduce(effects, %{s | core: core}, fn
      :refresh, s -> run(s, {:index, Watch.pods(s.watch), Watch.health(s.watch).synced})
      effect, s -> tap(s, &perform(effect, &1))
    end)
  end

  defp perform({:start, after: ms}, _s), do: Process.send_after(self(), :start, ms)
  defp perform({:timer, ms, event}, _s), do: Process.send_after(self(), {:core, event}, ms)
  defp perform({:connect, nodes}, s), do: Topology.connect(s.topology, nodes, timeout(s))
  defp perform({:disconnect, nodes}, s), do: Topology.disconnect(s.topology, nodes)

  defp perform(:leave, s) do
    Topology.quiet_global()
    perform(:disconnect_outsiders, s)
  end

  defp perform(:disconnect_outsiders, s), do: Topology.disconnect(s.topology, outsiders(s))
  defp perform({:log, level, message}, _s), do: Logger.log(level, message)

  defp perform({:name, pod, known}, s) do
    strategy = self()
    Nodes.name_async(pod, s.core.config, known, &send(strategy, {:core, &1}))
  end

  defp perform({:telemetry, event, measurements, metadata}, s) do
    metadata = Map.put(metadata, :topology, s.topology.name)
    PodDist.Telemetry.execute([:pod_dist, :strategy | event], measurements, metadata)
  end

  defp timeout(s), do: s.core.config[:connect_timeout]
  defp outsiders(s), do: Core.outsiders(s.core, Topology.list_nodes(s.topology))
end
