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

  ## Which nodes

  Every node a pod hosts is connected, whatever its basename:

    * `nodes: :epmd` (default in epmd mode): the nodes registered in each pod's epmd,
      so `api@`, `worker@` and several nodes per pod need no configuration.
    * `nodes: :declared` (default in epmd-less mode): the nodes the pod declares with
      container ports named `dist-<basename>` (see `PodDist.Epmd`).
    * `node_basename: "app"`: one fixed basename (libcluster's Kubernetes strategy).
    * `nodes: {:label, "key"}` or `{:annotation, "key"}`: basenames from the pod
      (comma-separated for several), or `nodes: fun` (pod -> basenames).

  Short-lived nodes are never connected to the cluster: basenames starting with `rem-`
  or `rpc-` (a release's `remote` and `rpc` commands), `maint_` or `maint-` (release
  tooling). They reach the node they came for by themselves, under random names.

  `host:` picks the host part: `:pod_name` (default, for `-sname app` in a pod), `:ip`,
  `:dashed_ip` (`10-42-2-46.ns.pod.cluster.local`) or `:hostname_fqdn`
  (`host.sub.ns.svc.cluster.local`), matching how your nodes are named. The native side
  builds every form (`pod.hosts`, next to the parser that reads them back); a pod without
  the form asked for (no IP, no `spec.subdomain`, ...) stands for no node.

  | `host` | node name | none for |
  |---|---|---|
  | `:pod_name` | `app@web-0` (reaches pods of the node's own namespace) | a pod name that is not one DNS label |
  | `:ip` | `app@10.42.2.46` | a pod without an IP, a hostNetwork pod (its IP is its node's) |
  | `:dashed_ip` | `app@10-42-2-46.prod.pod.<domain>` (IPv6 `fd00--2e`; `0-0-0-0-0-0-0-1` when compression would start or end the label with `-`) | as `:ip` |
  | `:hostname_fqdn` | `app@web-0.db.prod.svc.<domain>` | a pod without both `spec.hostname` and `spec.subdomain` (cluster DNS has no hostname record for it) |

  `<domain>` is the watch's cluster domain, which `PodDist.Watch.health/1` reports.

  ## Which pods

  Pods that are Ready (`eligible: :running` for Running ones) and not terminating
  (`keep_terminating: true` keeps draining pods connected). A pod that loses readiness
  keeps its connections (a readiness flap never partitions the cluster); a node of it
  that drops is called back once the pod is Ready again. With
  `version_label: "app.kubernetes.io/version"`, only pods whose label equals this pod's
  join, so a rolling update does not mix releases. While this node's own pod is not
  eligible (not ready yet, or terminating), it does not connect to anyone. The own pod is
  found by this node's host name; `own_pod: "name"` says it explicitly.

  ## Options

  | option | default | meaning |
  |---|---|---|
  | `nodes` | `:epmd` (epmd-less mode: `:declared`) | which nodes a pod hosts: `:epmd` (ask its epmd), `:declared` (its `dist-<basename>` ports), `{:label, key}`, `{:annotation, key}` (comma-separated basenames), or a function of the pod |
  | `node_basename` | none | one fixed basename for every pod (libcluster's Kubernetes strategy) |
  | `host` | `:pod_name` | host part of node names: `:pod_name`, `:ip`, `:dashed_ip`, `:hostname_fqdn` (table above) |
  | `eligible` | `:ready` | `:ready` or `:running` pods are connected |
  | `keep_terminating` | `false` | keep terminating pods connected while they drain |
  | `disconnect_deleted` | `true` | disconnect the nodes of deleted pods |
  | `version_label` | none | only pods whose label equals this pod's (keeps releases apart) |
  | `own_pod` | this node's host name | the pod this node runs in |
  | `reconcile_interval` | `30_000` | ms between reconnects of dropped nodes (from the index: no API call) |
  | `connect_timeout` | `5_000` | ms per connect attempt (and per epmd query); connects run concurrently |
  | `namespaces`, `label_selector`, `field_selector`, `service`, `api_url`, `ca_file`, `token_file`, `service_account_dir`, `kubeconfig`, `cluster_domain` | | as for `PodDist.Watch` (validated by the same code) |

  With `service` (the EndpointSlice source), `nodes: {:label, _}`, `nodes:
  {:annotation, _}` and `version_label` are a configuration error: slices carry no pod
  labels or annotations, and the error says they need the pods source.

  ## Our own node's life cycle

  `:waiting` (our pod is not eligible yet: nobody is connected), `:member` (our pod is
  eligible, or the synced index has no pod of our host name) and `:leaving` (our pod is
  terminating, `Failed` or `Succeeded`). Leaving, the node disconnects every node
  outside its pod and refuses those that come back; it is final, as the VM is on its
  way out (a new pod of our name is a new VM). `info/2` tells where a running strategy is.

  Membership changes on evidence, never on absence: a pod (ours or a peer's) that
  vanishes from the watch without having been seen terminating, `Failed` or `Succeeded`
  keeps its connections. That is what happens when a pod's selected label is removed
  and put back, when the headless Service is deleted and re-created or its selector
  edited (slice source), and with `host: :ip` when an evicted or finished pod holds a
  node's IP: our own pod is known by uid once found. See `PodDist.Strategy.Core`.

  Every connect, disconnect and listing of connected nodes goes through the topology's
  `connect`, `disconnect` and `list_nodes` functions, with the node appended to their
  arguments, as libcluster's own strategies do (already listed nodes are not connected
  again, unlisted ones not disconnected); hidden-node topologies list their nodes there.
  The decisions themselves are `PodDist.Strategy.Core`'s.

  ## When things go wrong

  An API failure (unreachable, 401, 403, ...) never disconnects anybody: the cluster
  stays as it was, the failure is logged once with what to fix, and the watch resumes
  by itself. The same holds when the NIF cannot load (under libcluster the strategy
  keeps running, logs the fix once and tries again with backoff) and when the watch
  cannot start. A naming that crashes (a `nodes:` function raising, a node name over
  255 characters) is logged once with the reason and retried with backoff.

  Every `reconcile_interval` (30 s) the strategy reconnects nodes that
  dropped, from the local index without any API call. Connects run concurrently, each
  bounded by `connect_timeout` (5 s).

  The other options (`namespaces`, `label_selector`, `field_selector`, `api_url`, ...)
  are those of `PodDist.Watch`. Its telemetry events (connects as spans, disconnects,
  discoveries, API errors, and libcluster's own connect and disconnect events) are
  listed in `PodDist.Telemetry`.
  """
  use GenServer
  require Logger

  alias PodDist.Strategy.{Config, Core, Nodes}
  alias PodDist.Watch

  # Backoff between attempts to start the watch (credentials not found, ...).
  @retry_start_ms 1_000
  @retry_start_max_ms 30_000
  # How long leaving waits for `global` to stop reporting lost connections.
  @quiet_global_ms 1_000

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
      topology: Keyword.get(config, :topology, :pod_dist),
      connect: {:net_kernel, :connect_node, []},
      disconnect: {:erlang, :disconnect_node, []},
      list_nodes: {:erlang, :nodes, [:connected]},
      config: Keyword.delete(config, :topology),
      meta: nil
    }

    GenServer.start_link(__MODULE__, state, if(name, do: [name: name], else: []))
  end

  @doc """
  What a running strategy knows: its topology, validated config (without the token;
  `[]` while the NIF cannot load), our own node's life cycle
  (`t:PodDist.Strategy.Core.life/0`), our own pod as last seen (`nil` until the index
  lists it) and the node names of each pod it follows, by uid. `PodDist.Doctor` reads
  the config and the names from here.
  """
  @spec info(GenServer.server(), timeout()) :: %{
          topology: atom(),
          config: keyword(),
          life: Core.life(),
          own_pod: Watch.pod() | nil,
          nodes: %{String.t() => [node()]}
        }
  def info(server, timeout \\ 5_000), do: GenServer.call(server, :info, timeout)

  @doc """
  The strategies running in this node (`PodDist.doctor/0` asks them for their config).
  """
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
    load_nif(state, 0, nil)
  end

  defp register(topology) do
    Registry.register(PodDist.Registry, __MODULE__, topology)
  rescue
    ArgumentError -> :not_registered
  end

  # The config is checked by the NIF: until it loads there is nothing to check nor to
  # watch. Under libcluster's Cluster.Supervisor a raise here would stop every topology,
  # and the application with it: say so once, and try again with backoff.
  defp load_nif(state, attempt, last_reason) do
    case PodDist.Native.load() do
      :ok ->
        configure(state)

      {:error, {path, text}} ->
        reason = "cannot load its NIF #{path}.so: #{text}"

        if reason != last_reason do
          fix = PodDist.Epmd.Fallback.nif(path, text, File.exists?("#{path}.so")).fix

          Logger.error(
            "PodDist.Strategy: #{reason}; nothing is connected or disconnected until it " <>
              "can, retrying with backoff (up to every #{div(@retry_start_max_ms, 1000)} s). Fix: #{fix}"
          )
        end

        Process.send_after(self(), {:load_nif, attempt + 1, reason}, backoff(attempt))

        # A closure: the config (the token too) does not show in a crash report.
        {:ok, %{topology: state.topology, watch: nil, core: nil, unloaded: fn -> state end}}
    end
  end

  defp backoff(attempt), do: min(@retry_start_ms * Integer.pow(2, attempt), @retry_start_max_ms)

  defp configure(state) do
    case Config.validate(state.config) do
      {:ok, config} ->
        # A closure: what it holds (the token too) does not show in a crash report.
        watch_options = Config.watch_options(config)
        # The token lives on in the watch only: a crash report must not print it.
        config = Keyword.delete(config, :token)

        state = %{
          topology: state.topology,
          connect: state.connect,
          disconnect: state.disconnect,
          list_nodes: Map.get(state, :list_nodes, {:erlang, :nodes, [:connected]}),
          watch: nil,
          tag: nil,
          core: Core.new(config, config[:own_pod] || host(Node.self())),
          # monitor ref => uid of the pod being named
          naming: %{}
        }

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
        if last_reason, do: Logger.info("PodDist.Strategy: watching pods now")
        tag = Watch.subscribe(watch)
        send(self(), :reconcile)
        hear_synced(watch, tag)
        # `global` connects nodes transitively: a node we let go can come back through a
        # third node, so every nodeup is checked against the pods (hidden ones too, for
        # topologies that list hidden nodes).
        # Why a node went down tells a node that hung up on us from one cut off here.
        if Node.alive?(),
          do: :net_kernel.monitor_nodes(true, [{:node_type, :all}, :nodedown_reason])

        %{state | watch: watch, tag: tag}

      {:error, reason} ->
        delay = backoff(attempt)

        if reason != last_reason do
          Logger.error(
            "PodDist.Strategy: cannot watch pods: #{reason}; nothing is connected or " <>
              "disconnected until it can, retrying with backoff (up to every #{div(@retry_start_max_ms, 1000)} s)"
          )
        end

        Process.send_after(self(), {:start_watch, start, attempt + 1, reason}, delay)
        state
    end
  end

  # `:synced` comes once, to those subscribed when the list is in; a watch that synced
  # just as we subscribed may not have told us. Hear it from `await_synced` then.
  defp hear_synced(watch, tag) do
    strategy = self()

    spawn_link(fn ->
      if Stream.repeatedly(fn -> Watch.await_synced(watch, 60_000) end) |> Enum.find(& &1),
        do: send(strategy, {:pod_dist, tag, :synced})
    end)
  end

  @impl true
  def handle_call(:info, _from, %{core: nil} = state),
    do:
      {:reply, %{topology: state.topology, config: [], life: :waiting, own_pod: nil, nodes: %{}},
       state}

  def handle_call(:info, _from, state) do
    core = state.core

    {:reply,
     %{
       topology: state.topology,
       config: core.config,
       life: Core.life(core),
       own_pod: core.own_pod,
       nodes: Core.nodes(core)
     }, state}
  end

  @impl true
  def handle_info({:load_nif, attempt, last_reason}, %{core: nil} = state) do
    case load_nif(state.unloaded.(), attempt, last_reason) do
      {:ok, state} -> {:noreply, state}
      {:stop, reason} -> {:stop, reason, state}
    end
  end

  def handle_info({:start_watch, start, attempt, last_reason}, %{watch: nil} = state),
    do: {:noreply, start_watch(state, start, attempt, last_reason)}

  # Without a watch there is nothing to decide from (nodeups cannot be judged either).
  def handle_info(_message, %{watch: nil} = state), do: {:noreply, state}

  def handle_info({:pod_dist, tag, :synced}, %{tag: tag} = state),
    do: {:noreply, index(state, true)}

  def handle_info({:pod_dist, tag, event}, %{tag: tag} = state),
    do: {:noreply, run(state, event)}

  # Every reconcile_interval: nodes that dropped are connected again, from the index
  # (no API call, no epmd asked for pods already named).
  def handle_info(:reconcile, state) do
    Process.send_after(self(), :reconcile, state.core.config[:reconcile_interval])
    {:noreply, index(state)}
  end

  def handle_info({:nodeup, node, _info}, state), do: handle_info({:nodeup, node}, state)

  def handle_info({:nodeup, node}, state) do
    pod =
      case Watch.lookup(state.watch, host(node)) do
        {:ok, _ip, %{} = pod} -> pod
        _ -> nil
      end

    {:noreply, run(state, {:nodeup, node, pod})}
  end

  def handle_info({:nodedown, node, info}, state),
    do: {:noreply, run(state, {:nodedown, node, info[:nodedown_reason]})}

  def handle_info({:core, event}, state), do: {:noreply, run(state, event)}

  # A naming that ended: it answered (`{:named, ...}` came first), or it crashed.
  def handle_info({:DOWN, ref, :process, _pid, reason}, %{naming: naming} = state)
      when is_map_key(naming, ref) do
    {uid, naming} = Map.pop(naming, ref)
    state = %{state | naming: naming}

    if reason == :normal,
      do: {:noreply, state},
      else: {:noreply, run(state, {:naming_failed, uid, Exception.format_exit(reason)})}
  end

  def handle_info({:connected, node, result, duration}, state) do
    report(state, :connect, node, result, duration)
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp index(state, synced \\ nil) do
    synced = if synced == nil, do: Watch.health(state.watch).synced, else: synced
    run(state, {:index, Watch.pods(state.watch), synced})
  end

  # Hands the event to the core, then carries out what it decided, in order.
  defp run(state, event) do
    {core, effects} = Core.handle(state.core, event)
    Enum.reduce(effects, %{state | core: core}, &effect/2)
  end

  # Naming may ask the pod's epmd, which can be slow or hang: it runs beside the strategy,
  # which hears back `{:named, ...}` and connects then, so no pod holds up another.
  defp effect({:name, pod, known}, state) do
    strategy = self()
    config = state.core.config

    {_pid, ref} =
      spawn_monitor(fn ->
        send(strategy, {:core, {:named, pod.uid, Nodes.names(pod, config, known)}})
      end)

    %{state | naming: Map.put(state.naming, ref, pod.uid)}
  end

  defp effect({:connect, nodes}, state), do: connect(state, nodes) && state
  defp effect({:disconnect, nodes}, state), do: disconnect(state, nodes) && state

  defp effect(:leave, state) do
    quiet_global()
    effect(:cut_outsiders, state)
  end

  defp effect(:cut_outsiders, state) do
    disconnect(state, Enum.reject(list_nodes(state), &Core.same_pod?(state.core, &1)))
    state
  end

  defp effect(:refresh, state), do: index(state)

  defp effect({:timer, ms, event}, state) do
    Process.send_after(self(), {:core, event}, ms)
    state
  end

  defp effect({:log, level, message}, state) do
    Logger.log(level, "PodDist.Strategy #{state.topology}: #{message}")
    state
  end

  defp effect({:telemetry, event, measurements, metadata}, state) do
    telemetry(event, measurements, Map.put(metadata, :topology, state.topology))
    state
  end

  # Leaving, we disconnect every node outside our pod (through the topology's function).
  # Cut one by one, a node whose `global` still prevents overlapping partitions tells
  # the others that it lost each peer, and they cut that peer too: the cluster left
  # behind would fall apart. So our `global` stops reporting lost connections first, as
  # it does when the node shuts down (`init:stop/0` sends it the same message); our pod
  # is terminating, and its nodes are on their way out (this node's `global` stays so
  # for the rest of its life, as it would while stopping). On a release without this
  # message `global` ignores it, and the wait below ends at its timeout.
  defp quiet_global do
    with true <- Node.alive?(),
         pid when is_pid(pid) <- Process.whereis(:global_name_server) do
      ref = make_ref()
      send(pid, {:prepare_shutdown, self(), ref})

      receive do
        {^ref, :ok} -> :ok
      after
        @quiet_global_ms -> :ok
      end
    end
  end

  # The nodes connected now, as the topology's `list_nodes` function says (libcluster's
  # contract: hidden-node topologies list their hidden nodes there).
  defp list_nodes(state) do
    {mod, fun, args} = state.list_nodes
    apply(mod, fun, args)
  end

  # As libcluster's `Cluster.Strategy.connect_nodes/4`: the nodes not listed yet, not
  # ourselves, each through the topology's `connect` with the node appended to its
  # arguments. Each connect runs in its own process: one dead IP never holds up the others.
  defp connect(state, nodes) do
    {mod, fun, args} = state.connect
    connected = MapSet.new(list_nodes(state))
    strategy = self()
    timeout = state.core.config[:connect_timeout]

    for node <- Enum.uniq(nodes), node != Node.self(), node not in connected do
      Task.start(fn ->
        {result, duration} =
          PodDist.Telemetry.connect(state.topology, node, fn ->
            task = Task.async(fn -> attempt(mod, fun, args ++ [node]) end)

            case Task.yield(task, timeout) || Task.shutdown(task, :brutal_kill) do
              {:ok, outcome} -> outcome
              _ -> {:ok, :timeout}
            end
          end)

        send(strategy, {:connected, node, result, duration})
      end)
    end

    :ok
  end

  # A connect function that raises is reported (a telemetry exception event, a warning),
  # not left to crash the connecting process unheard.
  defp attempt(mod, fun, args) do
    {:ok, apply(mod, fun, args)}
  catch
    kind, reason -> {:exception, kind, reason, __STACKTRACE__}
  end

  # As libcluster's `Cluster.Strategy.disconnect_nodes/4`: only nodes listed, not ourselves.
  defp disconnect(state, nodes) do
    {mod, fun, args} = state.disconnect
    connected = MapSet.new(list_nodes(state))

    for node <- Enum.uniq(nodes), node != Node.self(), node in connected do
      started = System.monotonic_time()
      result = apply(mod, fun, args ++ [node])
      report(state, :disconnect, node, result, System.monotonic_time() - started)
    end

    :ok
  end

  defp host(node), do: PodDist.NodeName.host(node)

  defp report(state, action, node, result, duration) do
    case {action, result} do
      {:connect, true} ->
        Logger.info("PodDist.Strategy #{state.topology}: connected to #{node}")

      {:connect, other} ->
        Logger.warning(
          "PodDist.Strategy #{state.topology}: unable to connect to #{node}: #{inspect(other)}"
        )

      {:disconnect, _} ->
        Logger.info("PodDist.Strategy #{state.topology}: disconnected from #{node}")
    end

    # Connects are reported as a telemetry span by the process that ran them.
    if action == :disconnect,
      do: PodDist.Telemetry.disconnect(state.topology, node, result, duration)

    :ok
  end

  defp telemetry(event, measurements, metadata),
    do: PodDist.Telemetry.execute([:pod_dist, :strategy | event], measurements, metadata)
end
