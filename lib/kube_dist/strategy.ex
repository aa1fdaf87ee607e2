defmodule KubeDist.Strategy do
  @moduledoc """
  A libcluster strategy driven by a Kubernetes watch: pods that become eligible are
  connected within milliseconds, deleted pods are disconnected, and nothing is polled.

      # config/runtime.exs
      config :libcluster,
        topologies: [
          k8s: [
            strategy: KubeDist.Strategy,
            config: [namespaces: ["prod"], label_selector: "app=shop"]
          ]
        ]

  It also runs without libcluster, as any child of your supervision tree:

      children = [{KubeDist.Strategy, label_selector: "app=shop"}]

  ## Which nodes

  Every node a pod hosts is connected, whatever its basename:

    * `nodes: :epmd` (default in epmd mode): the nodes registered in each pod's epmd,
      so `api@`, `worker@` and several nodes per pod need no configuration.
    * `nodes: :declared` (default in epmd-less mode): the nodes the pod declares with
      container ports named `dist-<basename>` (see `KubeDist.Epmd`).
    * `node_basename: "app"`: one fixed basename (libcluster's Kubernetes strategy).
    * `nodes: {:label, "key"}` or `{:annotation, "key"}`: basenames from the pod
      (comma-separated for several), or `nodes: fun` (pod -> basenames).

  `host:` picks the host part: `:pod_name` (default, for `-sname app` in a pod), `:ip`,
  `:dashed_ip` (`10-42-2-46.ns.pod.cluster.local`) or `:hostname_fqdn`
  (`host.sub.ns.svc.cluster.local`), matching how your nodes are named.

  ## Which pods

  Pods that are Ready (`eligible: :running` for Running ones) and not terminating
  (`keep_terminating: true` keeps draining pods connected). With
  `version_label: "app.kubernetes.io/version"`, only pods whose label equals this pod's
  join, so a rolling update does not mix releases. While this node's own pod is not
  eligible (not ready yet, or terminating), it does not connect to anyone. The own pod is
  found by this node's host name; `own_pod: "name"` says it explicitly.

  ## When things go wrong

  An API failure (unreachable, 401, 403, ...) never disconnects anybody: the cluster
  stays as it was, the failure is logged once with what to fix, and the watch resumes
  by itself. Every `reconcile_interval` (30 s) the strategy reconnects nodes that
  dropped, from the local index without any API call. Connects run concurrently, each
  bounded by `connect_timeout` (5 s).

  The other options (`namespaces`, `label_selector`, `field_selector`, `api_url`, ...)
  are those of `KubeDist.Watch`. When `:telemetry` is loaded, the strategy emits
  `[:kube_dist, :strategy, :connect]` and `[:kube_dist, :strategy, :disconnect]` with
  `%{duration: native_time}` and `%{node: node, result: term, topology: atom}`,
  `[:kube_dist, :strategy, :discovery]` when a pod joins or leaves (`%{nodes: count}`,
  `%{pod: name, change: :joined | :left, nodes: list, topology: atom}`), and
  `[:kube_dist, :strategy, :api_error]` with `%{message: binary}`.
  """
  use GenServer
  require Logger

  alias KubeDist.Strategy.{Config, Nodes}

  # How long the nodes of a pod that left are refused if something connects them again.
  @keep_departed_away 60_000
  # How long a departing pod's nodes get to leave by themselves before we cut them off.
  @leave_grace 1_000
  # Backoff between attempts to start the watch (credentials not found, ...).
  @retry_start_ms 1_000
  @retry_start_max_ms 30_000

  alias KubeDist.Watch

  @typedoc "libcluster's `%Cluster.Strategy.State{}` (or a map with the same keys)."
  @type state :: %{
          topology: atom(),
          connect: {module(), atom(), list()},
          disconnect: {module(), atom(), list()},
          list_nodes: {module(), atom(), list()},
          config: keyword(),
          meta: term()
        }

  @doc false
  @spec child_spec([state()] | keyword()) :: Supervisor.child_spec()
  def child_spec(args),
    do: %{id: __MODULE__, type: :worker, start: {__MODULE__, :start_link, [args]}}

  @doc """
  Starts the strategy: with `[state]` as libcluster's `Cluster.Supervisor` does, or with
  a keyword config (then connect and disconnect use `:net_kernel` and `:erlang`).
  """
  @spec start_link([state()] | keyword()) :: GenServer.on_start()
  def start_link([%{topology: _, connect: _, disconnect: _, config: _} = state]),
    do: GenServer.start_link(__MODULE__, state)

  def start_link(config) when is_list(config) do
    {name, config} = Keyword.pop(config, :name)

    state = %{
      topology: Keyword.get(config, :topology, :kube_dist),
      connect: {:net_kernel, :connect_node, []},
      disconnect: {:erlang, :disconnect_node, []},
      list_nodes: {:erlang, :nodes, [:connected]},
      config: Keyword.delete(config, :topology),
      meta: nil
    }

    GenServer.start_link(__MODULE__, state, if(name, do: [name: name], else: []))
  end

  @impl true
  def init(state) do
    Logger.metadata(topology: state.topology)

    case Config.validate(state.config) do
      {:ok, config} ->
        state = %{
          topology: state.topology,
          connect: state.connect,
          disconnect: state.disconnect,
          list_nodes: Map.get(state, :list_nodes, {:erlang, :nodes, [:connected]}),
          # The token lives on in the watch only: a crash report must not print it.
          config: Keyword.delete(config, :token),
          watch: nil,
          tag: nil,
          own_host: config[:own_pod] || host(Node.self()),
          # uid => node names we connected it for
          pods: %{},
          own_pod_gone: false,
          leaving: false,
          # node => when its pod left (ms)
          departed: %{}
        }

        # A closure: what it holds (the token too) does not show in a crash report.
        watch_options = Config.watch_options(config)
        {:ok, start_watch(state, fn -> Watch.start(watch_options) end, 0, nil)}

      # Options the code gives wrongly: a mistake to fix before deploying, said at once.
      {:error, reason} ->
        {:stop, {:invalid_config, reason}}
    end
  end

  # Credentials that cannot be found or an API URL that cannot be made (a service account
  # not mounted yet, a missing CA file) must not stop the strategy: under libcluster's
  # Cluster.Supervisor that stops every topology, and the application with it. Say so
  # once, and try again with backoff; meanwhile there is nothing to decide from.
  defp start_watch(state, start, attempt, last_reason) do
    case start.() do
      {:ok, watch} ->
        if last_reason, do: Logger.info("KubeDist.Strategy: watching pods now")
        tag = Watch.subscribe(watch)
        send(self(), :reconcile)
        # `global` connects nodes transitively: a node we let go can come back through a
        # third node, so every nodeup is checked against the pods.
        if Node.alive?(), do: :net_kernel.monitor_nodes(true)
        %{state | watch: watch, tag: tag}

      {:error, reason} ->
        delay = min(@retry_start_ms * Integer.pow(2, attempt), @retry_start_max_ms)

        if reason != last_reason do
          Logger.error(
            "KubeDist.Strategy: cannot watch pods: #{reason}; nothing is connected or " <>
              "disconnected until it can, retrying with backoff (up to every #{div(@retry_start_max_ms, 1000)} s)"
          )
        end

        Process.send_after(self(), {:start_watch, start, attempt + 1, reason}, delay)
        state
    end
  end

  @impl true
  def handle_info({:start_watch, start, attempt, last_reason}, %{watch: nil} = state),
    do: {:noreply, start_watch(state, start, attempt, last_reason)}

  # Without a watch there is nothing to decide from (nodeups cannot be judged either).
  def handle_info(_message, %{watch: nil} = state), do: {:noreply, state}

  def handle_info({:kube_dist, tag, event}, %{tag: tag} = state),
    do: {:noreply, on_event(event, state)}

  def handle_info(:reconcile, state) do
    Process.send_after(self(), :reconcile, state.config[:reconcile_interval])
    # A leaving node keeps itself out: a connection that came back anyway (seen with a
    # node that joined while we were leaving) is cut here too, not only at its nodeup.
    if state.leaving, do: cut_all_but_our_pod(state)
    {:noreply, reconcile(state)}
  end

  def handle_info({:named, uid, pod_name, nodes}, state) do
    case state.pods do
      %{^uid => known} ->
        # Every name the pod ever stood for is kept: it bounds the atoms a pod can make.
        all = Enum.uniq(known ++ nodes)
        if all != known, do: discovered(state, pod_name, :joined, nodes)
        # Eligible again (a pod of the same name came back): welcome.
        state = %{state | departed: Map.drop(state.departed, nodes)}
        if joining?(state), do: connect(state, nodes)
        {:noreply, put_in(state.pods[uid], all)}

      # The pod left while it was being named.
      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:nodeup, node}, state) do
    if unwelcome?(node, state), do: disconnect(state, [node])
    {:noreply, state}
  end

  # A node of an eligible pod dropped (a network blip, or `global` cutting a node off to
  # prevent overlapping partitions when another node left): connect it again soon,
  # rather than at the next reconcile.
  def handle_info({:nodedown, node}, state) do
    if joining?(state) and known?(node, state),
      do: Process.send_after(self(), {:reconnect, node}, 100 + :rand.uniform(200))

    {:noreply, state}
  end

  def handle_info({:reconnect, node}, state) do
    if joining?(state) and known?(node, state) and node not in connected(state),
      do: connect(state, [node])

    {:noreply, state}
  end

  # The grace is over: cut off those still connected, unless their pod came back since.
  def handle_info({:let_go, nodes, departed_at}, state) do
    connected = connected(state)

    disconnect(
      state,
      Enum.filter(nodes, &(state.departed[&1] == departed_at and &1 in connected))
    )

    {:noreply, state}
  end

  def handle_info({:connected, node, result, duration}, state) do
    report(state, :connect, node, result, duration)
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp on_event(:synced, state), do: reconcile(state)

  defp on_event({:api_error, message}, state) do
    Logger.warning(
      "KubeDist.Strategy #{state.topology}: #{message}; keeping the cluster as it is"
    )

    telemetry([:api_error], %{}, %{message: message, topology: state.topology})
    state
  end

  defp on_event({:deleted, pod}, state) do
    if own_pod?(pod, state) do
      Logger.info(
        "KubeDist.Strategy #{state.topology}: our own pod is gone; no longer reaching out"
      )
    end

    state = %{state | own_pod_gone: state.own_pod_gone or own_pod?(pod, state)}
    # Deleted without a grace period, our pod never looked terminating: leave now.
    state =
      if own_pod?(pod, state) and state.config[:disconnect_deleted], do: leave(state), else: state

    {nodes, pods} = Map.pop(state.pods, pod.uid, [])

    if state.config[:disconnect_deleted],
      do: state |> depart(nodes) |> Map.put(:pods, pods),
      else: %{state | pods: pods}
  end

  defp on_event({kind, pod}, state) when kind == :added, do: consider(pod, state)
  defp on_event({:changed, _old, pod}, state), do: consider(pod, state)

  # A pod that turns eligible is connected now; one that starts terminating is let go.
  defp consider(pod, state) do
    cond do
      own_pod?(pod, state) and pod.terminating and not state.config[:keep_terminating] ->
        leave(state)

      # Our pod turned Ready: reach out to everyone now, our pod's other nodes included.
      # (A pod of our name that is not terminating is a new one: we are back.)
      own_pod?(pod, state) ->
        state = %{state | own_pod_gone: false, leaving: false}

        if Nodes.eligible?(pod, state.config, own_version(state)),
          do: reconcile(state),
          else: state

      Nodes.eligible?(pod, state.config, own_version(state)) ->
        name(state, pod)
        %{state | pods: Map.put_new(state.pods, pod.uid, [])}

      pod.terminating and Map.has_key?(state.pods, pod.uid) ->
        {nodes, pods} = Map.pop(state.pods, pod.uid)
        discovered(state, pod.name, :left, nodes)
        depart(%{state | pods: pods}, nodes)

      true ->
        state
    end
  end

  # Everything eligible in the index (our own pod's other nodes too), connected if
  # missing; nothing is disconnected here. Names are asked again each time: in :epmd
  # mode a pod's nodes register after it is Ready.
  defp reconcile(state) do
    pods =
      Enum.filter(Watch.pods(state.watch), &Nodes.eligible?(&1, state.config, own_version(state)))

    Enum.each(pods, &name(state, &1))
    forget_after = System.monotonic_time(:millisecond) - @keep_departed_away
    departed = for {node, at} <- state.departed, at > forget_after, into: %{}, do: {node, at}
    %{state | pods: Map.merge(Map.new(pods, &{&1.uid, []}), state.pods), departed: departed}
  end

  # Naming may ask the pod's epmd, which can be slow or hang: it runs beside the strategy,
  # which hears back `{:named, ...}` and connects then, so no pod holds up another.
  defp name(state, pod) do
    strategy = self()
    config = state.config
    known = Map.get(state.pods, pod.uid, [])

    Task.start(fn ->
      send(strategy, {:named, pod.uid, pod.name, Nodes.names(pod, config, known)})
    end)
  end

  # Let go of nodes whose pod left, and keep them away for a while: `global` may connect
  # them again through a node that has not heard of the departure yet. A node running
  # KubeDist leaves by itself within milliseconds, through `global.disconnect/0`, which
  # keeps the rest of the cluster whole; cutting it off from here instead makes `global`
  # on third nodes break their connections too, to prevent overlapping partitions. So
  # the nodes get @leave_grace to go before they are disconnected.
  defp depart(state, nodes) do
    now = System.monotonic_time(:millisecond)
    Process.send_after(self(), {:let_go, nodes, now}, @leave_grace)
    %{state | departed: Map.merge(state.departed, Map.new(nodes, &{&1, now}))}
  end

  # Our pod is terminating: let go of every node outside it (once).
  defp leave(%{leaving: true} = state), do: state

  defp leave(state) do
    Logger.info(
      "KubeDist.Strategy #{state.topology}: our pod is terminating; leaving the cluster"
    )

    # Leave `global`'s cluster first: disconnected one by one, a node that is still alive
    # makes `global` cut the others apart too, to prevent overlapping partitions.
    if function_exported?(:global, :disconnect, 0), do: :global.disconnect()
    cut_all_but_our_pod(state)
    %{state | leaving: true}
  end

  defp cut_all_but_our_pod(state),
    do: disconnect(state, Enum.reject(connected(state), &same_pod?(&1, state)))

  # The nodes connected now, as the topology's `list_nodes` function says (libcluster's
  # contract: hidden-node topologies list their hidden nodes there).
  defp connected(state) do
    {mod, fun, args} = state.list_nodes
    apply(mod, fun, args)
  end

  # A node that must not stay connected: we are leaving, or its pod is terminating.
  # Nodes of our own pod (a remote shell) are always welcome.
  defp unwelcome?(node, state) do
    cond do
      same_pod?(node, state) -> false
      state.leaving or state.own_pod_gone -> true
      Map.has_key?(state.departed, node) -> true
      state.config[:keep_terminating] -> false
      true -> match?({:ok, _, %{terminating: true}}, Watch.lookup(state.watch, host(node)))
    end
  end

  defp known?(node, state), do: Enum.any?(state.pods, fn {_uid, nodes} -> node in nodes end)

  defp same_pod?(node, state), do: host(node) == state.own_host
  defp host(node), do: node |> Atom.to_string() |> String.split("@") |> List.last()

  # Our own pod must be eligible (ready, not terminating) before we reach out.
  defp joining?(%{own_pod_gone: true}), do: false
  defp joining?(%{leaving: true}), do: false

  defp joining?(state) do
    case own_pod(state) do
      # Not found at all: not on Kubernetes, or named otherwise; nothing to wait for.
      nil -> true
      pod -> not pod.terminating and Nodes.eligible?(pod, state.config, own_version(state))
    end
  end

  defp own_pod(state) do
    case Watch.lookup(state.watch, state.own_host) do
      {:ok, _ip, %{} = pod} -> pod
      _ -> nil
    end
  end

  defp own_pod?(pod, state), do: Nodes.host(pod, state.config) == state.own_host

  defp own_version(state) do
    with label when is_binary(label) <- state.config[:version_label],
         %{labels: labels} <- own_pod(state) do
      Map.get(labels, label)
    else
      _ -> nil
    end
  end

  # Each connect runs in its own process: one dead IP never holds up the others.
  defp connect(state, nodes) do
    {mod, fun, args} = state.connect
    connected = MapSet.new(connected(state))
    strategy = self()
    timeout = state.config[:connect_timeout]

    for node <- nodes, node != Node.self(), node not in connected do
      Task.start(fn ->
        started = System.monotonic_time()
        task = Task.async(fn -> apply(mod, fun, args ++ [node]) end)

        result =
          with nil <- Task.yield(task, timeout) || Task.shutdown(task, :brutal_kill),
               do: {:ok, :timeout}

        send(strategy, {:connected, node, elem(result, 1), System.monotonic_time() - started})
      end)
    end

    :ok
  end

  defp disconnect(state, nodes) do
    {mod, fun, args} = state.disconnect

    for node <- nodes, node != Node.self() do
      started = System.monotonic_time()
      result = apply(mod, fun, args ++ [node])
      report(state, :disconnect, node, result, System.monotonic_time() - started)
    end

    :ok
  end

  defp discovered(state, pod_name, change, nodes) do
    telemetry([:discovery], %{nodes: length(nodes)}, %{
      pod: pod_name,
      change: change,
      nodes: nodes,
      topology: state.topology
    })
  end

  defp report(state, action, node, result, duration) do
    case {action, result} do
      {:connect, true} ->
        Logger.info("KubeDist.Strategy #{state.topology}: connected to #{node}")

      {:connect, other} ->
        Logger.warning(
          "KubeDist.Strategy #{state.topology}: unable to connect to #{node}: #{inspect(other)}"
        )

      {:disconnect, _} ->
        Logger.info("KubeDist.Strategy #{state.topology}: disconnected from #{node}")
    end

    telemetry([action], %{duration: duration}, %{
      node: node,
      result: result,
      topology: state.topology
    })
  end

  # :telemetry is optional: used when the application has it, never required.
  defp telemetry(event, measurements, metadata) do
    if Code.ensure_loaded?(:telemetry) do
      apply(:telemetry, :execute, [[:kube_dist, :strategy | event], measurements, metadata])
    end

    :ok
  end
end
