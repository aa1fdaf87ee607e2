defmodule PodDist.Doctor do
  @moduledoc """
  Explains an empty `Node.list()`: checks, from inside a node, everything clustering
  depends on and says how to fix what fails.

      $ kubectl exec -it deploy/shop -- bin/shop rpc "PodDist.doctor()"
      [ok]   distribution: shop@shop-7d9c-x2x4q, short names
      [ok]   epmd module: PodDist.Epmd, epmd mode
      [ok]   API server: https://10.96.0.1:443, in_cluster credentials, TLS verified
      [FAIL] RBAC in "prod": pods in namespace prod: 403 Forbidden ...
             fix: kubectl apply -f - <<EOF ... (the Role and RoleBinding to apply)
      ...

  The checks, in order: distribution (started, name mode); the epmd module and its
  mode (and, if it runs as the stock one since boot, why); the NIF (when it does not
  load, nothing else is checked: the file, and which build to run); the API server (reachable, credentials, TLS); RBAC (`get`, `list`, `watch` on
  pods) in each watched namespace; the pods seen, and which are eligible and why not;
  this node's own pod; then every candidate node: its name, how its host resolves,
  whether its epmd (or declared port) answers, and whether it is connected.

  The doctor observes, it does not act: it never connects a node (a connect would make
  a visible connection in a hidden-node topology, pull a leaving node back in, and let
  `global` connect the rest transitively), and it names pods as the strategy does, with
  the names the running strategy already knows and at most 16 per pod.

  It reads the configuration of the `PodDist.Strategy` running in this node, else the
  `POD_DIST_*` variables of `PodDist.Epmd`; `PodDist.doctor(config)` checks an
  explicit strategy config instead. `mix pod_dist.doctor` runs the same checks from a
  development machine through a kubeconfig.
  """

  alias PodDist.Strategy.{Config, Core, Nodes}
  alias PodDist.Watch

  @typedoc "One check's outcome; `fix` says what to do when it is not `:ok`."
  @type check :: %{
          name: String.t(),
          status: :ok | :warn | :fail,
          detail: String.t(),
          fix: String.t() | nil
        }

  @sync_timeout 5_000
  @probe_timeout 2_000
  # Beyond this many candidates, the node checks stop: the summary says how many were left.
  @max_candidates 20

  @doc """
  Runs every check and returns them, printing nothing. `config` is a `PodDist.Strategy`
  config; without it, the running strategy's (or `PodDist.Epmd`'s) is used.
  """
  @spec run(keyword() | nil) :: [check()]
  def run(config \\ nil) do
    distribution = [distribution(), epmd_module()]

    with :ok <- nif(),
         {:ok, config} <- Config.validate(config || discovered_config()),
         {:ok, watch} <- Watch.start(Config.watch_options(config)) do
      synced = Watch.await_synced(watch, @sync_timeout)
      health = Watch.health(watch)
      pods = if synced, do: Watch.pods(watch), else: []
      own = own_pod(watch, config)

      distribution ++
        [api(health, synced)] ++
        restarts(health) ++
        rbac(health, config) ++
        service(config[:service], health, synced, pods) ++
        [pods_seen(pods, config, own), own_pod_check(own, config)] ++
        candidates(pods, config, own)
    else
      {:nif_failed, check} ->
        distribution ++ [check]

      {:error, reason} ->
        distribution ++
          [
            check(
              "configuration",
              :fail,
              reason,
              "set api_url (or run in a pod with a service account, or point KUBECONFIG at a kubeconfig)"
            )
          ]
    end
  end

  @doc "Formats checks as lines of text, one per check, with the fix under each failure."
  @spec format([check()]) :: String.t()
  def format(checks) do
    Enum.map_join(checks, "", fn %{name: name, status: status, detail: detail, fix: fix} ->
      tag = %{ok: "[ok]  ", warn: "[warn]", fail: "[FAIL]"}[status]
      fix = if fix && status != :ok, do: indent("fix: " <> fix), else: ""
      "#{tag} #{name}: #{detail}\n#{fix}"
    end)
  end

  ## The checks

  defp distribution do
    if Node.alive?() do
      mode = if :net_kernel.longnames(), do: "long names", else: "short names"
      check("distribution", :ok, "#{Node.self()}, #{mode}")
    else
      check(
        "distribution",
        :fail,
        "this node is not distributed",
        "start it with a name: `-sname app` in vm.args (or RELEASE_DISTRIBUTION=sname in rel/env.sh.eex)"
      )
    end
  end

  # Without the NIF nothing else can be checked: say which file and which build.
  defp nif do
    case PodDist.Epmd.load_nif() do
      :ok -> :ok
      {:error, %{detail: detail, fix: fix}} -> {:nif_failed, check("NIF", :fail, detail, fix)}
    end
  end

  defp epmd_module do
    case {:net_kernel.epmd_module(), PodDist.Epmd.problem()} do
      {PodDist.Epmd, %{detail: detail, fix: fix}} ->
        check(
          "epmd module",
          :fail,
          "PodDist.Epmd, #{PodDist.Epmd.mode()} mode, running as the stock one since boot: #{detail}",
          fix
        )

      {PodDist.Epmd, nil} ->
        check("epmd module", :ok, "PodDist.Epmd, #{PodDist.Epmd.mode()} mode")

      {other, _} ->
        check(
          "epmd module",
          :warn,
          "#{inspect(other)}: pod names as node hosts will not resolve from other pods",
          "add `-epmd_module Elixir.PodDist.Epmd` to vm.args, or name nodes by IP (host: :ip)"
        )
    end
  end

  defp api(health, true) do
    check(
      "API server",
      :ok,
      "#{health.api_url}, #{health.credentials} credentials, TLS verified, #{health.pods} pods"
    )
  end

  defp api(health, false) do
    detail = health.last_error || "no answer within #{@sync_timeout} ms"

    fix =
      case health.error do
        :unreachable ->
          "check that the API server is reachable from this pod (address, NetworkPolicy)"

        :certificate ->
          "the API server's certificate is not signed by the configured CA (ca_file)"

        :unauthorized ->
          "the token was rejected: check the mounted service-account token (or kubeconfig)"

        :forbidden ->
          "grant access to #{source_resource(health)}: see the RBAC lines below"

        :throttled ->
          "the API server is shedding load (429, API Priority and Fairness): the watch waits its Retry-After before each retry; if it lasts, give this service account its own priority level (examples/kubernetes/flowschema.yaml)"

        _ ->
          "see the error above"
      end

    check("API server", :fail, "#{health.api_url || "?"}: #{detail}", fix)
  end

  @doc false
  # A watch that died was restarted, and has listed again if the API check passed; but
  # it died of a bug, which is worth reporting. Silent while it never died.
  @spec restarts(map()) :: [check()]
  def restarts(%{restarts: 0}), do: []

  def restarts(%{restarts: count, last_restart: reason}) do
    times = if count == 1, do: "once", else: "#{count} times"

    check(
      "watch",
      :warn,
      "the native watch died and was restarted #{times}; last: #{reason}",
      "a bug in PodDist: please report it with this message (the index was listed again after each restart)"
    )
    |> List.wrap()
  end

  # A 403 only tells which namespace first failed: check each on its own watch.
  defp rbac(health, config) do
    scopes =
      case health.namespaces do
        :all -> [{nil, :all, "all namespaces"}]
        list -> Enum.map(list, &{&1, [&1], inspect(&1)})
      end

    for {namespace, watched, scope} <- scopes do
      options = Keyword.put(Config.watch_options(config), :namespaces, watched)

      # The health is read from the same watch: a watch nobody holds any more stops, and
      # a new one would not have met the error yet.
      with {:ok, watch} <- Watch.start(options),
           false <- Watch.await_synced(watch, @sync_timeout) do
        error = Watch.health(watch)

        fix =
          if error.error == :forbidden,
            do: role_yaml(namespace, error.service_account, config[:service])

        check("RBAC in #{scope}", :fail, error.last_error || "no answer", fix)
      else
        true ->
          check("RBAC in #{scope}", :ok, "get, list and watch on #{resource(config)} allowed")

        {:error, reason} ->
          check("RBAC in #{scope}", :fail, inspect(reason))
      end
    end
  end

  defp source_resource(%{source: {:service, _}}), do: "endpointslices"
  defp source_resource(_health), do: "pods"

  defp resource(config), do: if(config[:service], do: "endpointslices", else: "pods")

  # The slice source: the Service's slices must name pods. The nodes' Role reads slices
  # only, not Services: no slice at all says the Service is missing, has no selector
  # (the controller writes slices only for a Service with one) or selects nothing.
  defp service(nil, _health, _synced, _pods), do: []
  defp service(_service, _health, false, _pods), do: []

  defp service(service, health, true, pods) do
    namespace = List.first(List.wrap(health.namespaces))

    if pods == [] do
      [
        check(
          "service #{service}",
          :fail,
          "its EndpointSlices in namespace #{inspect(namespace)} name no pod",
          "check that the headless Service #{service} exists in #{namespace}, has a selector " <>
            "(without one no slice is written) that matches the pods' labels, and sets " <>
            "publishNotReadyAddresses: true: kubectl -n #{namespace} get service #{service} -o yaml; " <>
            "kubectl -n #{namespace} get endpointslices -l kubernetes.io/service-name=#{service}"
        )
      ]
    else
      [
        check(
          "service #{service}",
          :ok,
          "#{length(pods)} pods from its EndpointSlices in namespace #{inspect(namespace)}"
        )
      ]
    end
  end

  defp pods_seen(pods, config, own) do
    {eligible, others} = Enum.split_with(pods, &(why_not(&1, config, own) == nil))

    detail =
      "#{length(pods)} seen, #{length(eligible)} eligible" <>
        Enum.map_join(others, "", &"\n  #{&1.name}: #{why_not(&1, config, own)}")

    status = if pods == [], do: :warn, else: :ok

    fix =
      if config[:service],
        do: "check the Service's selector against the pods' labels",
        else: "check namespaces and label_selector against the pods' labels"

    check("pods", status, detail, fix)
  end

  defp own_pod_check(nil, config) do
    check(
      "own pod",
      :warn,
      "no watched pod is named #{own_host(config)}",
      "set own_pod:, or watch the namespace and labels this pod has"
    )
  end

  defp own_pod_check(pod, config) do
    if why_not(pod, config, pod) == nil do
      check("own pod", :ok, "#{pod.namespace}/#{pod.name} #{ip(pod.ip)}, eligible")
    else
      check(
        "own pod",
        :warn,
        "#{pod.namespace}/#{pod.name} is #{why_not(pod, config, pod)}: this node waits before reaching out",
        "wait for the pod to become Ready (see its readinessProbe)"
      )
    end
  end

  defp candidates(pods, config, own) do
    if Node.alive?(),
      do: check_candidates(pods, config, own),
      else: [check("nodes", :warn, "not checked: this node is not distributed")]
  end

  defp check_candidates(pods, config, own) do
    # Our own pod too: the other nodes in it are candidates as well.
    eligible = Enum.filter(pods, &(why_not(&1, config, own) == nil))

    {checked, skipped} = Enum.split(eligible, @max_candidates)
    # The names the strategy knows are reused: asking again makes no new atoms for them.
    known = known_names()

    nodes =
      checked
      |> Task.async_stream(&{&1, Nodes.names(&1, config, Map.get(known, &1.uid, []))},
        timeout: :infinity,
        max_concurrency: 8
      )
      |> Enum.flat_map(fn {:ok, {pod, names}} -> candidate(pod, names) end)

    if skipped == [],
      do: nodes,
      else: nodes ++ [check("nodes", :ok, "#{length(skipped)} more eligible pods not checked")]
  end

  defp candidate(pod, []) do
    [
      check(
        "node in #{pod.name}",
        :warn,
        "no node name known for this pod",
        "with nodes: :epmd, the pod's nodes must be registered in its epmd; with :declared, name its container port dist-<basename>"
      )
    ]
  end

  defp candidate(_pod, names), do: for(node <- names, node != Node.self(), do: node_check(node))

  defp node_check(node) do
    {name, host} = PodDist.NodeName.split(node)
    epmd = :net_kernel.epmd_module()

    with {:ok, ip, port} <- address(epmd, name, host),
         :ok <- reachable(ip, port) do
      if node in Node.list(:connected) do
        check("node #{node}", :ok, "#{host} -> #{ip(ip)}, port #{port} answers, connected")
      else
        check(
          "node #{node}",
          :warn,
          "#{host} -> #{ip(ip)}, port #{port} answers, not connected (the doctor does not connect)",
          "the strategy connects eligible pods' nodes: see its log for failed connects " <>
            "(then check the cookie, the same RELEASE_COOKIE everywhere, and the TLS " <>
            "distribution settings); a node whose pod is leaving connects to nobody"
        )
      end
    else
      {:error, step, why} ->
        check("node #{node}", :fail, "#{step}: #{inspect(why)}", fix_for(step))
    end
  end

  ## Probes, each bounded

  # The address as distribution would find it: through the epmd module in use.
  defp address(epmd, name, host) do
    case bounded(fn -> epmd.address_please(~c"#{name}", ~c"#{host}", :inet) end) do
      {:ok, ip} -> port(epmd, name, ip)
      {:ok, ip, port, _version} -> {:ok, ip, port}
      other -> {:error, "resolve #{host}", other}
    end
  end

  defp port(epmd, name, ip) do
    case bounded(fn -> epmd.port_please(~c"#{name}", ip, @probe_timeout) end) do
      {:port, port, _version} -> {:ok, ip, port}
      other -> {:error, "epmd at #{ip(ip)} (port 4369) for #{name}", other}
    end
  end

  defp reachable(ip, port) do
    case :gen_tcp.connect(ip, port, [], @probe_timeout) do
      {:ok, socket} -> :gen_tcp.close(socket)
      {:error, why} -> {:error, "distribution port #{ip(ip)}:#{port}", why}
    end
  end

  defp bounded(fun) do
    task = Task.async(fun)

    case Task.yield(task, @probe_timeout) || Task.shutdown(task, :brutal_kill) do
      {:ok, result} -> result
      nil -> :timeout
    end
  end

  defp fix_for("resolve " <> _),
    do: "the host is no watched pod: check host:, namespaces and label_selector"

  defp fix_for("epmd " <> _),
    do:
      "the node is not running or not registered; in a pod with several nodes use epmd-less mode"

  defp fix_for(_),
    do:
      "the node does not listen there: check its dist port (epmd-less: its dist-<basename> port)"

  ## Helpers

  # The strategy's own rule (PodDist.Strategy.Core.explain/3), in words.
  defp why_not(pod, config, own) do
    case Core.explain(pod, config, own) do
      :eligible -> nil
      :no_ip -> "no IP yet"
      :terminating -> "terminating"
      :not_ready -> "not Ready"
      :not_running -> "not Running"
      :other_version -> "another version"
    end
  end

  defp own_pod(watch, config) do
    case Watch.lookup(watch, own_host(config)) do
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

  # The config of a PodDist.Strategy running in this node, through its public
  # `PodDist.Strategy.info/2` (found through `PodDist.Strategy.running/0`: it may run
  # unnamed, under libcluster's supervisor).
  defp discovered_config do
    case strategy_info() do
      %{config: [_ | _] = config} -> config
      _ -> PodDist.Epmd.watch_options()
    end
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

  # `service_account`: the one the API named when it denied access, if it did.
  defp role_yaml(namespace, service_account, service) do
    {account_ns, account} = service_account || {namespace || "default", "default"}

    {group, resource} = if service, do: {"discovery.k8s.io", "endpointslices"}, else: {"", "pods"}

    {kind, binding, meta} =
      if namespace,
        do: {"Role", "RoleBinding", "\n  namespace: #{namespace}"},
        else: {"ClusterRole", "ClusterRoleBinding", ""}

    """
    apply this (kubectl apply -f -):
    apiVersion: rbac.authorization.k8s.io/v1
    kind: #{kind}
    metadata:
      name: pod-dist#{meta}
    rules:
      - apiGroups: ["#{group}"]
        resources: ["#{resource}"]
        verbs: ["get", "list", "watch"]
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: #{binding}
    metadata:
      name: pod-dist#{meta}
    roleRef:
      apiGroup: rbac.authorization.k8s.io
      kind: #{kind}
      name: pod-dist
    subjects:
      - kind: ServiceAccount
        name: #{account}
        namespace: #{account_ns}
    """
  end

  defp check(name, status, detail, fix \\ nil),
    do: %{name: name, status: status, detail: detail, fix: fix}

  defp indent(text),
    do: text |> String.split("\n", trim: true) |> Enum.map_join("", &"       #{&1}\n")

  defp ip(nil), do: "no IP"
  defp ip(ip), do: ip |> :inet.ntoa() |> to_string()
end
