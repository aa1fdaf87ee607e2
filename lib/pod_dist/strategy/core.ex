defmodule PodDist.Strategy.Core do
  @moduledoc """
  The membership decisions of `PodDist.Strategy`, as a pure function:
  `handle(core, event) -> {core, effects}`.

  The core hears what happens (the strategy failing to start or starting, pod events
  from the watch, snapshots of its index, nodeups and nodedowns, naming results, its
  own timers) and answers with what to do (start again, name a pod, connect,
  disconnect, leave, set a timer, log, emit telemetry). It does no I/O:
  `PodDist.Strategy` runs the effects, through `PodDist.Strategy.Topology`. So every
  rule below is tested by feeding events and reading effects, without a Kubernetes
  API, a NIF or a second node.

  ## Starting

  A NIF that cannot load, or a watch that cannot start (credentials not mounted yet, a
  missing CA file), never stops the strategy: under libcluster's `Cluster.Supervisor`
  that would stop every topology, and the application with it. Each failure is logged
  once (until it changes) and the start is tried again with backoff, 1 s doubling up
  to 30 s. Meanwhile there is nothing to decide from: nobody is connected or
  disconnected.

  ## Evidence, never absence

  Membership changes on evidence about a pod's uid, never on a pod missing from the
  watch. Evidence is a pod terminating (a `deletionTimestamp`, or its endpoint marked
  terminating) or in phase `Failed`/`Succeeded`, seen in a change or as the last state
  of a deletion. A pod that vanishes without it is not gone: with a label selector the
  API server sends a deletion when a label is removed, and with the slice source a
  re-created Service or an edited selector removes every endpoint for a while. A pod
  really deleted without a grace period has its containers killed by its kubelet:
  nothing needs to be cut for it.

  ## Our own node's life cycle

  Our own pod is found by host name (`own_pod:` or the host of `Node.self()`), then known
  by its uid: another pod with our host (an evicted or finished pod holding our IP with
  `host: :ip`) never moves us. When several share our host before we know ours, a live
  one is preferred over a terminating one over a dead one.

    * `:waiting`: our pod is not eligible yet (not Ready, another phase), or the index
      has not listed it yet. Pods are tracked and named, nobody is connected. A member
      whose pod loses readiness waits too: it keeps its connections, reaches out to
      nobody new, and others do not call it back until it is Ready again.
    * `:member`: our pod is eligible, or the synced index has no pod of our host name
      (not on Kubernetes, or named otherwise: nothing to wait for). Eligible pods'
      nodes are connected.
    * `:leaving`: our pod is terminating (unless `keep_terminating`), `Failed` or
      `Succeeded`. We leave once, then cut every node outside our pod that connects
      again. Leaving is final: a uid that terminates never stops terminating, and
      leaving quiets `global` for the rest of the VM's life (it then ignores new
      connections, as when the node stops), so the node never becomes a member again;
      a new pod of our name runs in a new VM. Our pod vanishing without evidence
      changes nothing: we stay, and say so once.

  ## Naming

  A pod is named (its node names found) when it becomes eligible, again when one of
  its nodes goes down, when an unknown node of its host comes up, and at each index
  snapshot while it has no names yet (with `nodes: :epmd` its nodes register after it
  is Ready). A pod has one naming at a time; an ask meanwhile runs after it. So the
  names a pod ever stood for, kept here, bound its atoms to 16 however namings
  interleave (`PodDist.Strategy.Nodes.names/3` gets them as `known`).

  ## Nodes that drop

  Only nodes of pods that are eligible now are connected or called back. A Ready pod
  that loses readiness keeps its connections (a readiness flap never partitions), but a
  node of it that drops is called back only once the pod is eligible again.

  A node lost to a network blip is connected again within 300 ms. A node that hung up
  on us, or that our `global` cut because a third node lost it, is called back only 3 s
  later, if its pod is still eligible then: it may be leaving, its pod terminating,
  which its own watch saw before ours (watches of one API server lag each other under
  load), and a node called back at once would be cut again, over and over: each
  round costs every node a nodedown. Until then no snapshot reaches out to it either:
  `global` also cuts a node that a third node cannot connect to yet (a peer whose
  watch, lagging, cannot resolve its name), and a snapshot every `reconcile_interval`
  would start that fight again at each one.

  A pod that vanishes from the watch without evidence keeps its nodes connected; they
  are just no longer called back if they drop.

  ## Departed pods

  The nodes of a pod that left (evidence about its uid) are disconnected after a second (they
  leave `global` by themselves meanwhile, which keeps the others whole) and refused for
  a minute if `global` connects them again through a third node. The refusal is keyed
  by the pod's uid: a StatefulSet pod recreated under the same name is a new pod, and
  welcome; a departed uid seen again not terminating never left, and is welcome too.
  `disconnect_deleted: false` leaves the nodes of a pod deleted (with evidence) to go by
  themselves.
  """

  alias PodDist.Strategy.Nodes

  # How long the nodes of a pod that left are refused if something connects them again.
  @refuse_departed 60_000
  # How long a departing pod's nodes get to leave by themselves before we cut them off.
  @leave_grace 1_000
  # How long a node that hung up on us is held before it is connected again (see
  # `{:nodedown, ...}`): long enough for our watch to catch up with a termination its
  # own watch saw first.
  @hold_hung_up 3_000
  # Backoff between namings of a pod whose naming crashed.
  @retry_naming 1_000
  @retry_naming_max 60_000
  # Backoff between attempts to start (the NIF loading, the watch starting).
  @retry_start 1_000
  @retry_start_max 30_000
  @retrying "nothing is connected or disconnected until it can, retrying with backoff " <>
              "(up to every #{div(@retry_start_max, 1000)} s)"

  @typedoc "Our own node's life cycle (see the module docs)."
  @type life :: :waiting | :member | :leaving

  @typedoc "A pod the core follows: eligible once, with the names it stood for."
  @type tracked :: %{
          pod: PodDist.Watch.pod(),
          host: String.t(),
          nodes: [node()],
          naming: boolean(),
          again: boolean(),
          failures: non_neg_integer()
        }

  @type t :: %__MODULE__{
          topology: atom(),
          config: keyword(),
          own_host: String.t(),
          own_pod: PodDist.Watch.pod() | nil,
          life: life(),
          pods: %{String.t() => tracked()},
          hosts: %{String.t() => String.t()},
          departed: %{String.t() => {[node()], non_neg_integer()}},
          held: MapSet.t(node()),
          generation: non_neg_integer(),
          synced: boolean(),
          start_failure: {{:nif | :watch, String.t()}, non_neg_integer()} | nil
        }

  defstruct topology: nil,
            config: [],
            own_host: nil,
            own_pod: nil,
            life: :waiting,
            # uid => tracked pod
            pods: %{},
            # host part of a watched pod's node names => its uid (the newest pod there)
            hosts: %{},
            # uid => {nodes, generation}: pods that left, whose nodes are refused
            departed: %{},
            # nodes that hung up or that global cut, held before they are connected again
            held: MapSet.new(),
            generation: 0,
            # the watch said it synced (its health may say so only a moment later)
            synced: false,
            # {{what, reason}, attempt} while the strategy cannot start
            start_failure: nil

  @typedoc "What the core hears."
  @type event ::
          {:nif_unavailable, detail :: String.t(), fix :: String.t()}
          | {:watch_unavailable, reason :: String.t()}
          | :started
          | :synced
          | :reconcile
          | {:index, [PodDist.Watch.pod()], synced :: boolean()}
          | {:added, PodDist.Watch.pod()}
          | {:changed, old :: PodDist.Watch.pod(), new :: PodDist.Watch.pod()}
          | {:deleted, PodDist.Watch.pod()}
          | {:api_error, String.t()}
          | {:nodeup, node(), PodDist.Watch.pod() | nil}
          | {:nodedown, node(), reason :: atom()}
          | {:named, uid :: String.t(), [node()]}
          | {:naming_failed, uid :: String.t(), reason :: String.t()}
          | {:retry_naming, uid :: String.t()}
          | {:reconnect, node()}
          | {:release, node()}
          | {:disconnect_departed, uid :: String.t(), generation :: non_neg_integer()}
          | {:forget, uid :: String.t(), generation :: non_neg_integer()}

  @typedoc """
  What the core asks for. `{:start, after: ms}` tries to start again (load the NIF,
  check the config, start the watch); `:connect` and `:disconnect` go through the
  topology's functions, which skip nodes already connected (or not connected) as
  `list_nodes` says; `:leave` leaves `global` quietly and disconnects every listed node
  outside our pod (`outsiders/2`); `:disconnect_outsiders` does the same without the
  `global` step; `:refresh` feeds the index back as `{:index, pods, synced}`;
  `{:timer, ms, event}` feeds the event back after `ms`. Log messages are whole lines.
  """
  @type effect ::
          {:start, after: pos_integer()}
          | {:name, PodDist.Watch.pod(), known :: [node()]}
          | {:connect, [node()]}
          | {:disconnect, [node()]}
          | :leave
          | :disconnect_outsiders
          | :refresh
          | {:timer, non_neg_integer(), event()}
          | {:log, :info | :warning | :error, String.t()}
          | {:telemetry, [atom()], map(), map()}

  @typedoc "Why a pod is not eligible, or `:eligible`."
  @type verdict :: :eligible | :no_ip | :terminating | :not_ready | :not_running | :other_version

  @doc "A new core for `topology`, not started yet (no config: it is checked at start)."
  @spec new(atom()) :: t()
  def new(topology), do: %__MODULE__{topology: topology}

  @doc """
  The core with its validated `PodDist.Strategy` config; `own_host` is the host part of
  our own pod's node names (`own_pod:` or the host of `Node.self()`).
  """
  @spec configure(t(), keyword(), String.t()) :: t()
  def configure(core, config, own_host), do: %{core | config: config, own_host: own_host}

  @doc """
  Whether `pod` is one to connect to, and if not why, under `config`, given our own
  pod (for `version_label`). The strategy decides with this, the doctor explains with it.
  """
  @spec explain(PodDist.Watch.pod(), keyword(), PodDist.Watch.pod() | nil) :: verdict()
  def explain(pod, config, own_pod) do
    cond do
      pod.ip == nil -> :no_ip
      pod.terminating and not config[:keep_terminating] -> :terminating
      config[:eligible] == :ready and not pod.ready -> :not_ready
      config[:eligible] == :running and pod.phase != :running -> :not_running
      not same_version?(pod, config[:version_label], own_pod) -> :other_version
      true -> :eligible
    end
  end

  defp same_version?(_pod, nil, _own), do: true

  defp same_version?(pod, label, own),
    do: Map.get(pod.labels, label) == (own && Map.get(own.labels, label))

  @doc """
  Whether `basename` names a short-lived node: a release's remote shell (`rem-…`) or
  `rpc` (`rpc-…`) node, or release tooling (`maint_…`, `maint-…`). Such nodes come and
  go by the minute under random names: they are never connected to the cluster (they
  connect to the node they came for themselves), and never become atoms here.
  """
  @spec short_lived?(String.t()) :: boolean()
  def short_lived?(basename),
    do: String.starts_with?(basename, ["rem-", "rpc-", "maint_", "maint-"])

  @doc "Whether `node` runs in our own pod (a sibling, or a remote shell into it)."
  @spec same_pod?(t(), node()) :: boolean()
  def same_pod?(core, node), do: host(node) == core.own_host

  @doc "The nodes of `connected` outside our own pod: those that leaving disconnects."
  @spec outsiders(t(), [node()]) :: [node()]
  def outsiders(core, connected), do: Enum.reject(connected, &same_pod?(core, &1))

  @doc "Our own node's life cycle value."
  @spec life(t()) :: life()
  def life(core), do: core.life

  @typedoc "What `info/1` tells."
  @type info :: %{
          topology: atom(),
          config: keyword(),
          life: life(),
          own_pod: PodDist.Watch.pod() | nil,
          nodes: %{String.t() => [node()]}
        }

  @doc """
  The topology, the validated config (`[]` until the strategy starts; never the
  token), our own node's life cycle, our own pod as last seen (`nil` until the index
  lists it) and the node names of each pod followed, by uid.
  """
  @spec info(t()) :: info()
  def info(core) do
    %{
      topology: core.topology,
      config: core.config,
      life: core.life,
      own_pod: core.own_pod,
      nodes: nodes(core)
    }
  end

  @doc "The node names of each pod followed, by uid."
  @spec nodes(t()) :: %{String.t() => [node()]}
  def nodes(core), do: Map.new(core.pods, fn {uid, tracked} -> {uid, tracked.nodes} end)

  @doc "Decides what to do about `event`."
  @spec handle(t(), event()) :: {t(), [effect()]}
  def handle(core, {:nif_unavailable, reason, fix}) do
    start_failed(
      core,
      {:nif, reason},
      "PodDist.Strategy: #{reason}; #{@retrying}. Fix: #{fix}"
    )
  end

  def handle(core, {:watch_unavailable, reason}) do
    start_failed(
      core,
      {:watch, reason},
      "PodDist.Strategy: cannot watch pods: #{reason}; #{@retrying}"
    )
  end

  def handle(core, :started) do
    log =
      case core.start_failure do
        {{:watch, _}, _} -> [{:log, :info, "PodDist.Strategy: watching pods now"}]
        _ -> []
      end

    # The first snapshot comes as the next message: the strategy's init returns first.
    {%{core | start_failure: nil}, log ++ [{:timer, 0, :reconcile}]}
  end

  def handle(core, :synced), do: {%{core | synced: true}, [:refresh]}

  # Every reconcile_interval: nodes that dropped are connected again, from the index
  # (no API call, no epmd asked for pods already named).
  def handle(core, :reconcile),
    do: {core, [:refresh, {:timer, core.config[:reconcile_interval], :reconcile}]}

  def handle(core, {:index, pods, synced}) do
    synced = synced or core.synced
    own = find_own(pods, core)
    # The best pod of each host wins (live over terminating over dead).
    hosts = pods |> Enum.sort_by(&rank/1, :desc) |> Map.new(&{host_of(&1, core), &1.uid})
    core = %{core | hosts: hosts, pods: refresh_tracked(core.pods, pods)}

    {core, effects} =
      cond do
        own -> own_pod(core, own)
        # Synced and no pod of ours ever: not on Kubernetes, or named otherwise. (Ours
        # out of the watch for a while changes nothing.)
        synced and core.life == :waiting and core.own_pod == nil -> {%{core | life: :member}, []}
        true -> {core, []}
      end

    {core, named} =
      pods
      |> Enum.filter(&(eligible?(&1, core) and not shares_our_host?(&1, core)))
      |> Enum.reduce({core, []}, fn pod, {core, acc} ->
        case core.pods[pod.uid] do
          # Named, or being named: nothing to ask (no epmd is polled at every snapshot).
          %{nodes: [_ | _]} -> {core, acc}
          %{naming: true} -> {core, acc}
          # Its naming crashed: asked again at its backoff's end.
          %{failures: failures} when failures > 0 -> {core, acc}
          _ -> with {core, e} <- name(core, pod), do: {core, acc ++ e}
        end
      end)

    {core, effects ++ named ++ connect_known(core)}
  end

  def handle(core, {:added, pod}), do: pod_seen(core, pod)
  def handle(core, {:changed, _old, pod}), do: pod_seen(core, pod)

  def handle(core, {:deleted, pod}) do
    core = %{core | hosts: drop_host(core.hosts, host_of(pod, core), pod.uid)}
    {core, own_effects} = if own_uid?(pod, core), do: own_deleted(core, pod), else: {core, []}
    {tracked, pods} = Map.pop(core.pods, pod.uid)
    core = %{core | pods: pods}

    cond do
      tracked == nil or tracked.nodes == [] ->
        {core, own_effects}

      # Gone without evidence: its nodes stay connected, no longer called back.
      not departure?(pod, core) ->
        {core, own_effects}

      core.config[:disconnect_deleted] ->
        {core, depart} = depart(core, pod.uid, tracked.nodes)
        {core, own_effects ++ [discovery(tracked.pod.name, :left, tracked.nodes) | depart]}

      true ->
        {core, own_effects ++ [discovery(tracked.pod.name, :left, tracked.nodes)]}
    end
  end

  def handle(core, {:api_error, message}) do
    {core,
     [
       say(core, :warning, "#{message}; keeping the cluster as it is"),
       {:telemetry, [:api_error], %{}, %{message: message}}
     ]}
  end

  def handle(core, {:nodeup, node, pod}) do
    cond do
      refuse?(core, node, pod) -> {core, [{:disconnect, [node]}]}
      uid = new_node_of(core, node) -> name(core, uid)
      true -> {core, []}
    end
  end

  # A node of an eligible pod dropped, `reason` being net_kernel's `nodedown_reason`.
  #
  # It hung up on us (`:connection_closed`: it disconnected, or its VM stopped): it may
  # be leaving, its pod terminating, which its own watch saw before ours did. Called
  # back at once it would cut us again, over and over until our watch catches up, and
  # every nodeup makes `global` sync with it. So it is called back a few seconds later
  # (if its pod is still eligible then), or by its pod's next change; snapshots skip it
  # until then.
  #
  # Otherwise (`:disconnect` when we or our `global` cut it, to prevent overlapping
  # partitions when another node left; `:net_tick_timeout` after a network blip) it
  # is connected again soon, rather than at the next snapshot, and with `nodes: :epmd`
  # the pod's epmd is asked what runs there now.
  #
  # `:disconnect` of a node we follow is our `global`'s doing (we only cut nodes of pods
  # that left): a third node lost it, most often because it is leaving. It waits as a
  # node that hung up does: called back at once, it would be cut again by the leaving
  # node, and `global` would spread each new loss to every node.
  def handle(core, {:nodedown, node, reason}) do
    cond do
      eligible_uid(core, node) == nil ->
        {core, []}

      reason in [:connection_closed, :disconnect] ->
        {%{core | held: MapSet.put(core.held, node)},
         [{:timer, @hold_hung_up + jitter(node), {:release, node}}]}

      true ->
        reconnect(core, node, jitter(node))
    end
  end

  def handle(core, {:release, node}) do
    core = %{core | held: MapSet.delete(core.held, node)}
    if eligible_uid(core, node), do: reconnect(core, node, 0), else: {core, []}
  end

  def handle(core, {:reconnect, node}) do
    if core.life == :member and eligible_uid(core, node),
      do: {core, [{:connect, [node]}]},
      else: {core, []}
  end

  def handle(core, {:named, uid, nodes}) do
    case core.pods do
      %{^uid => tracked} ->
        # Every name the pod ever stood for is kept: it bounds the atoms a pod can make.
        new = Enum.take(nodes -- tracked.nodes, Nodes.max_per_pod() - length(tracked.nodes))
        nodes = Enum.filter(nodes, &(&1 in tracked.nodes or &1 in new))

        core =
          put_in(core.pods[uid], %{
            tracked
            | nodes: tracked.nodes ++ new,
              naming: false,
              failures: 0
          })

        joined = if new != [], do: [discovery(tracked.pod.name, :joined, nodes)], else: []
        connect = if core.life == :member and nodes != [], do: [{:connect, nodes}], else: []
        # Asked again while it ran: ask now, with the names just learnt as known.
        {core, again} = if tracked.again, do: name(core, uid), else: {core, []}

        {core, joined ++ connect ++ again}

      # The pod left while it was being named.
      _ ->
        {core, []}
    end
  end

  # A naming that crashed (a `nodes:` function raising, a name over 255 characters):
  # said once, until one succeeds, and tried again later with backoff.
  def handle(core, {:naming_failed, uid, reason}) do
    case core.pods do
      %{^uid => tracked} ->
        failures = tracked.failures + 1

        core =
          put_in(core.pods[uid], %{tracked | naming: false, again: false, failures: failures})

        delay = min(@retry_naming * Integer.pow(2, failures - 1), @retry_naming_max)

        log =
          if failures == 1,
            do: [
              say(
                core,
                :warning,
                "naming pod #{tracked.pod.name} failed: #{reason}; retrying with backoff " <>
                  "(check the nodes: and host: options)"
              )
            ],
            else: []

        {core, log ++ [{:timer, delay, {:retry_naming, uid}}]}

      _ ->
        {core, []}
    end
  end

  def handle(core, {:retry_naming, uid}) do
    case core.pods do
      %{^uid => %{naming: false} = tracked} ->
        if eligible?(tracked.pod, core), do: name(core, uid), else: {core, []}

      _ ->
        {core, []}
    end
  end

  # The grace is over: cut off those still connected, unless the name is a new pod's now.
  def handle(core, {:disconnect_departed, uid, generation}) do
    case core.departed do
      %{^uid => {nodes, ^generation}} ->
        {core, [{:disconnect, Enum.reject(nodes, &replaced?(core, &1, uid))}]}

      _ ->
        {core, []}
    end
  end

  def handle(core, {:forget, uid, generation}) do
    case core.departed do
      %{^uid => {_nodes, ^generation}} -> {%{core | departed: Map.delete(core.departed, uid)}, []}
      _ -> {core, []}
    end
  end

  # Ask the pod of a node that dropped what runs there now (with `nodes: :epmd`), and
  # connect the node again after `delay`.
  defp reconnect(core, node, delay) do
    uid = eligible_uid(core, node)
    {core, named} = if core.config[:nodes] == :epmd, do: name(core, uid), else: {core, []}

    reconnect =
      cond do
        core.life != :member -> []
        delay == 0 -> [{:connect, [node]}]
        true -> [{:timer, delay, {:reconnect, node}}]
      end

    {core, named ++ reconnect}
  end

  ## Starting

  # Said once until the reason changes; a new kind of failure starts a new backoff.
  defp start_failed(core, {what, _} = failure, message) do
    attempt =
      case core.start_failure do
        {{^what, _}, attempt} -> attempt + 1
        _ -> 0
      end

    delay = min(@retry_start * Integer.pow(2, attempt), @retry_start_max)
    said? = match?({^failure, _}, core.start_failure)
    log = if said?, do: [], else: [{:log, :error, message}]
    {%{core | start_failure: {failure, attempt}}, log ++ [{:start, after: delay}]}
  end

  ## Pods

  defp pod_seen(core, pod) do
    core = %{core | hosts: put_host(core.hosts, host_of(pod, core), pod)}
    # A departed uid seen again without evidence never left.
    core =
      if departure?(pod, core),
        do: core,
        else: %{core | departed: Map.delete(core.departed, pod.uid)}

    cond do
      shares_our_host?(pod, core) ->
        {core, []}

      own_pod?(pod, core) ->
        {core, effects} = own_pod(core, pod)
        # Our pod's other nodes are candidates too.
        {core, named} = track(core, pod)
        {core, effects ++ named}

      eligible?(pod, core) ->
        track(core, pod)

      departure?(pod, core) and Map.has_key?(core.pods, pod.uid) ->
        {tracked, pods} = Map.pop(core.pods, pod.uid)
        {core, depart} = depart(%{core | pods: pods}, pod.uid, tracked.nodes)
        {core, [discovery(tracked.pod.name, :left, tracked.nodes) | depart]}

      # Not eligible any more (readiness lost): connected still, not called back.
      Map.has_key?(core.pods, pod.uid) ->
        {put_in(core.pods[pod.uid].pod, pod), []}

      true ->
        {core, []}
    end
  end

  # An eligible pod: named when it becomes eligible; with pure naming (labels,
  # annotations, ports, a function) at every change too, as its answer may change.
  defp track(core, pod) do
    cond do
      not eligible?(pod, core) -> {core, []}
      not Map.has_key?(core.pods, pod.uid) -> name(core, pod)
      core.config[:nodes] != :epmd -> name(core, pod)
      true -> {put_in(core.pods[pod.uid].pod, pod), []}
    end
  end

  # Our pod: the life cycle follows it. Leaving is final (see the module docs).
  defp own_pod(%{life: :leaving} = core, pod), do: {%{core | own_pod: pod}, []}

  defp own_pod(core, pod) do
    was = core.life
    before = core.own_pod
    core = %{core | own_pod: pod}

    cond do
      departure?(pod, core) ->
        leave(core)

      explain(pod, core.config, pod) == :eligible ->
        core = %{core | life: :member}
        # Eligibility of the others may depend on our pod (its version): judge again.
        refresh? = was != :member or version(before, core) != version(pod, core)
        {core, if(refresh?, do: [:refresh], else: [])}

      true ->
        {%{core | life: :waiting}, []}
    end
  end

  defp version(nil, _core), do: nil

  defp version(pod, core),
    do: core.config[:version_label] && pod.labels[core.config[:version_label]]

  defp leave(%{life: :leaving} = core), do: {core, []}

  defp leave(core) do
    state = if core.own_pod.terminating, do: "terminating", else: "#{core.own_pod.phase}"

    {%{core | life: :leaving},
     [say(core, :info, "our pod is #{state}; leaving the cluster for good"), :leave]}
  end

  # Our pod's uid left the watch. With evidence (its last state terminating or dead) we
  # have left already, or leave now; without, it only vanished: we stay.
  defp own_deleted(core, pod) do
    if departure?(pod, core) do
      own_pod(core, pod)
    else
      {core,
       [
         say(
           core,
           :warning,
           "our pod #{pod.name} vanished from the watch without terminating (a label " <>
             "removed, the Service re-created or its selector edited?); staying in the cluster"
         )
       ]}
    end
  end

  # One naming per pod at a time: a second ask waits for the first answer. The pod
  # given is the newest seen; a uid names the pod as last seen.
  defp name(core, uid) when is_binary(uid), do: name(core, core.pods[uid].pod)

  defp name(core, %{uid: uid} = pod) do
    case core.pods do
      %{^uid => %{naming: true} = tracked} ->
        {put_in(core.pods[uid], %{tracked | pod: pod, again: true}), []}

      %{^uid => tracked} ->
        {put_in(core.pods[uid], %{tracked | pod: pod, naming: true, again: false}),
         [{:name, pod, tracked.nodes}]}

      _ ->
        tracked = %{
          pod: pod,
          host: host_of(pod, core),
          nodes: [],
          naming: true,
          again: false,
          failures: 0
        }

        {put_in(core.pods[uid], tracked), [{:name, pod, []}]}
    end
  end

  # Let go of nodes whose pod left, and keep them away for a while: `global` may
  # connect them again through a node that has not heard of the departure yet.
  defp depart(core, _uid, []), do: {core, []}

  defp depart(core, uid, nodes) do
    generation = core.generation + 1

    {%{core | departed: Map.put(core.departed, uid, {nodes, generation}), generation: generation},
     [
       {:timer, @leave_grace, {:disconnect_departed, uid, generation}},
       {:timer, @refuse_departed, {:forget, uid, generation}}
     ]}
  end

  # Every known node but those held, if we are a member (the runner skips those
  # connected); a node leaving cuts again whoever came back (seen with a node that
  # joined as we left).
  defp connect_known(%{life: :member} = core) do
    nodes =
      for {_uid, tracked} <- core.pods,
          eligible?(tracked.pod, core),
          node <- tracked.nodes,
          not MapSet.member?(core.held, node),
          do: node

    if nodes == [], do: [], else: [{:connect, nodes}]
  end

  defp connect_known(%{life: :leaving}), do: [:disconnect_outsiders]
  defp connect_known(_core), do: []

  ## Nodes

  # A node that must not stay connected: we are leaving, its pod left or is terminating.
  # Nodes of our own pod (a remote shell) are always welcome.
  defp refuse?(core, node, pod) do
    cond do
      same_pod?(core, node) -> false
      core.life == :leaving -> true
      departed?(core, node, pod) -> true
      core.config[:keep_terminating] -> false
      true -> pod != nil and pod.terminating
    end
  end

  # The pod now behind the node's host decides: a departed one (or none, it was
  # deleted) is refused; a new pod under the same name is not.
  defp departed?(core, node, nil),
    do: Enum.any?(core.departed, fn {_uid, {nodes, _}} -> node in nodes end)

  defp departed?(core, _node, pod), do: Map.has_key?(core.departed, pod.uid)

  defp replaced?(core, node, departed_uid) do
    case core.hosts[host(node)] do
      nil -> false
      ^departed_uid -> false
      _new_pod -> true
    end
  end

  # The uid of the pod `node` belongs to, if it is eligible now.
  defp eligible_uid(core, node) do
    Enum.find_value(core.pods, fn {uid, tracked} ->
      if node in tracked.nodes and eligible?(tracked.pod, core), do: uid
    end)
  end

  # An unknown node of a pod we follow with `nodes: :epmd`: its epmd has a new name
  # (not a remote shell or an rpc node, which come and go).
  defp new_node_of(core, node) do
    host = host(node)

    if core.config[:nodes] == :epmd and not short_lived?(basename(node)) do
      Enum.find_value(core.pods, fn {uid, tracked} ->
        if tracked.host == host and node not in tracked.nodes, do: uid
      end)
    end
  end

  ## Helpers

  defp eligible?(pod, core), do: explain(pod, core.config, core.own_pod) == :eligible

  # Evidence that a pod's uid is going away (see the module docs).
  defp departure?(pod, core),
    do:
      (pod.terminating and not core.config[:keep_terminating]) or
        pod.phase in [:failed, :succeeded]

  # Our pod: by uid once known; before, a pod of our host name.
  defp own_pod?(pod, %{own_pod: nil} = core), do: host_of(pod, core) == core.own_host
  defp own_pod?(pod, core), do: pod.uid == core.own_pod.uid

  defp own_uid?(pod, core), do: core.own_pod != nil and pod.uid == core.own_pod.uid

  # Another pod with our host name: an evicted or finished pod holding our IP. Its
  # names would be ours: it is neither us nor a peer. Before our pod is known, a live
  # pod of our host name is taken for ours, others wait for the index to rank them.
  defp shares_our_host?(pod, %{own_pod: nil} = core),
    do: host_of(pod, core) == core.own_host and rank(pod) > 0

  defp shares_our_host?(pod, core),
    do: host_of(pod, core) == core.own_host and pod.uid != core.own_pod.uid

  # Our pod in a snapshot: the known uid, or the best pod of our host name.
  defp find_own(pods, %{own_pod: nil} = core) do
    case Enum.filter(pods, &(host_of(&1, core) == core.own_host)) do
      [] -> nil
      mine -> Enum.min_by(mine, &rank/1)
    end
  end

  defp find_own(pods, core), do: Enum.find(pods, &(&1.uid == core.own_pod.uid))

  # Live (0) before terminating (1) before dead (2), as the index ranks IP owners.
  defp rank(pod) do
    cond do
      pod.phase in [:failed, :succeeded] -> 2
      pod.terminating -> 1
      true -> 0
    end
  end

  # Followed pods as the snapshot has them (eligibility is judged on the latest state).
  defp refresh_tracked(tracked, pods) do
    Enum.reduce(pods, tracked, fn %{uid: uid} = pod, acc ->
      case acc do
        %{^uid => t} -> Map.put(acc, uid, %{t | pod: pod})
        _ -> acc
      end
    end)
  end

  defp put_host(hosts, host, pod) do
    case hosts do
      %{^host => uid} when uid != pod.uid ->
        if rank(pod) == 0, do: Map.put(hosts, host, pod.uid), else: hosts

      _ ->
        Map.put(hosts, host, pod.uid)
    end
  end

  # A pod without an IP has no host in the IP forms yet.
  defp host_of(pod, core), do: Nodes.host(pod, core.config)

  defp drop_host(hosts, host, uid) do
    case hosts do
      %{^host => ^uid} -> Map.delete(hosts, host)
      _ -> hosts
    end
  end

  defp host(node), do: PodDist.NodeName.host(node)
  defp basename(node), do: PodDist.NodeName.basename(node)

  # Spread reconnects of nodes that dropped together, deterministically.
  defp jitter(node), do: 100 + :erlang.phash2(node, 200)

  defp say(core, level, message),
    do: {:log, level, "PodDist.Strategy #{core.topology}: #{message}"}

  defp discovery(pod_name, change, nodes),
    do:
      {:telemetry, [:discovery], %{nodes: length(nodes)},
       %{pod: pod_name, change: change, nodes: nodes}}
end
