defmodule PodDist.Doctor.Gather do
  @moduledoc """
  What the doctor observes, each probe bounded: this node's distribution and epmd
  module, the NIF, the running strategy's configuration, a watch's health and pods,
  each namespace's access on its own watch, and how candidate nodes answer. It decides
  nothing: `PodDist.Doctor.Checks` does.

  It never connects a node: a connect would make a visible connection in a
  hidden-node topology, pull a leaving node back in, and let `global` connect the rest
  transitively.
  """

  alias PodDist.Doctor.Checks
  alias PodDist.Strategy.{Config, Nodes}
  alias PodDist.Watch

  @sync_timeout 5_000
  @probe_timeout 2_000

  @doc "This node's name and name mode, `nil` when it is not distributed."
  @spec distribution() :: Checks.distribution()
  def distribution do
    if Node.alive?(), do: %{node: Node.self(), longnames: :net_kernel.longnames()}
  end

  @doc "The epmd module in use, and `PodDist.Epmd`'s boot problem and mode."
  @spec epmd() :: Checks.epmd()
  def epmd do
    %{
      module: :net_kernel.epmd_module(),
      problem: PodDist.Epmd.problem(),
      mode: PodDist.Epmd.mode()
    }
  end

  @doc "Loads the NIF; without it nothing else can be observed."
  @spec nif() :: :ok | {:nif_failed, %{detail: String.t(), fix: String.t()}}
  def nif do
    case PodDist.Epmd.load_nif() do
      :ok -> :ok
      {:error, problem} -> {:nif_failed, problem}
    end
  end

  @doc """
  The config of a `PodDist.Strategy` running in this node, through its public
  `PodDist.Strategy.info/2` (found through `PodDist.Strategy.running/0`: it may run
  unnamed, under libcluster's supervisor), else `PodDist.Epmd`'s.
  """
  @spec config() :: keyword()
  def config do
    case strategy_info() do
      %{config: [_ | _] = config} -> config
      _ -> PodDist.Epmd.watch_options()
    end
  end

  @doc """
  Watches as `config` says for up to #{@sync_timeout} ms: its health and pods, our own
  pod, and each watched namespace's access on a watch of its own.
  """
  @spec cluster(keyword()) :: {:ok, Checks.cluster()} | {:error, String.t()}
  def cluster(config) do
    with {:ok, watch} <- Watch.start(Config.watch_options(config)) do
      synced = Watch.await_synced(watch, @sync_timeout)
      health = Watch.health(watch)
      own_host = own_host(config)

      {:ok,
       %{
         health: health,
         synced: synced,
         waited: @sync_timeout,
         pods: if(synced, do: Watch.pods(watch), else: []),
         own: own_pod(watch, own_host),
         own_host: own_host,
         access:
           for {scope, namespace, watched} <- Checks.access_scopes(health) do
             {scope, namespace, access(config, watched)}
           end
       }}
    end
  end

  # The health is read from the same watch: a watch nobody holds any more stops, and
  # a new one would not have met the error yet.
  defp access(config, namespaces) do
    options = Keyword.put(Config.watch_options(config), :namespaces, namespaces)

    with {:ok, watch} <- Watch.start(options),
         false <- Watch.await_synced(watch, @sync_timeout) do
      {:failed, Watch.health(watch)}
    else
      true -> :ok
      {:error, reason} -> {:error, reason}
    end
  end

  @doc """
  The node names of each pod, as the strategy names them (reusing the names the
  running strategy already knows: asking again makes no new atoms for them), and how
  each node answers, as distribution would reach it.
  """
  @spec probe([map()], keyword()) :: [{map(), [{node(), Checks.probe()}]}]
  def probe(pods, config) do
    known = known_names()

    pods
    |> Task.async_stream(&{&1, Nodes.names(&1, config, Map.get(known, &1.uid, []))},
      timeout: :infinity,
      max_concurrency: 8
    )
    |> Enum.map(fn {:ok, {pod, names}} -> {pod, Enum.map(names, &{&1, probe_node(&1)})} end)
  end

  defp probe_node(node) when node == node(), do: :self

  defp probe_node(node) do
    {name, host} = PodDist.NodeName.split(node)

    with {:ok, ip, port} <- address(:net_kernel.epmd_module(), name, host),
         :ok <- reachable(ip, port) do
      {:ok, ip, port, node in Node.list(:connected)}
    end
  end

  # The address as distribution would find it: through the epmd module in use.
  defp address(epmd, name, host) do
    case bounded(fn -> epmd.address_please(~c"#{name}", ~c"#{host}", :inet) end) do
      {:ok, ip} -> port(epmd, name, ip)
      {:ok, ip, port, _version} -> {:ok, ip, port}
      other -> {:error, {:resolve, host}, other}
    end
  end

  defp port(epmd, name, ip) do
    case bounded(fn -> epmd.port_please(~c"#{name}", ip, @probe_timeout) end) do
      {:port, port, _version} -> {:ok, ip, port}
      other -> {:error, {:epmd, ip, name}, other}
    end
  end

  defp reachable(ip, port) do
    case :gen_tcp.connect(ip, port, [], @probe_timeout) do
      {:ok, socket} -> :gen_tcp.close(socket)
      {:error, why} -> {:error, {:dist_port, ip, port}, why}
    end
  end

  defp bounded(fun) do
    task = Task.async(fun)

    case Task.yield(task, @probe_timeout) || Task.shutdown(task, :brutal_kill) do
      {:ok, result} -> result
      nil -> :timeout
    end
  end

  defp own_pod(watch, own_host) do
    case Watch.lookup(watch, own_host) do
      {:ok, _ip, %{} = pod} -> pod
      _ -> nil
    end
  end

  defp own_host(config) do
    config[:own_pod] ||
      if Node.alive?(),
        do: PodDist.NodeName.host(Node.self()),
        else: hostname()
  end

  defp hostname do
    {:ok, name} = :inet.gethostname()
    List.to_string(name)
  end

  defp known_names do
    case strategy_info() do
      %{nodes: nodes} -> nodes
      _ -> %{}
    end
  end

  defp strategy_info do
    Enum.find_value(PodDist.Strategy.running(), &info/1)
  end

  defp info(pid) do
    PodDist.Strategy.info(pid, 1_000)
  catch
    :exit, _ -> nil
  end
end
