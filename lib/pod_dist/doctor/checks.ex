defmodule PodDist.Doctor.Checks do
  @moduledoc """
  The doctor's checks as pure functions: each takes what `PodDist.Doctor.Gather`
  observed (watch health, pods, the epmd module, probe results) and returns check
  results, saying what to fix for each that is not `:ok`.
  """

  alias PodDist.Doctor
  alias PodDist.Doctor.Role
  alias PodDist.Strategy.Core

  # Beyond this many candidates, the node checks stop: the summary says how many were left.
  @max_candidates 20

  @typedoc "This node's distribution: its name and name mode, `nil` when not distributed."
  @type distribution :: %{node: node(), longnames: boolean()} | nil

  @typedoc "The epmd module in use, the problem it hit at boot (if any) and its mode."
  @type epmd :: %{
          module: module(),
          problem: %{detail: String.t(), fix: String.t()} | nil,
          mode: atom()
        }

  @typedoc "Whether one namespace's own watch synced (`:ok`), failed with a health, or did not start."
  @type access :: :ok | {:failed, map()} | {:error, term()}

  @typedoc "What the doctor's watch saw, and each watched namespace's access."
  @type cluster :: %{
          health: map(),
          synced: boolean(),
          waited: non_neg_integer(),
          pods: [map()],
          own: map() | nil,
          own_host: String.t(),
          access: [{String.t(), String.t() | nil, access()}]
        }

  @typedoc "The probe that failed: resolving the host, asking its epmd, or connecting."
  @type step ::
          {:resolve, host :: String.t()}
          | {:epmd, :inet.ip_address(), basename :: String.t()}
          | {:dist_port, :inet.ip_address(), :inet.port_number()}

  @typedoc "How a node answered: its address and port, and whether it is connected."
  @type probe ::
          {:ok, :inet.ip_address(), :inet.port_number(), connected :: boolean()}
          | {:error, step(), term()}
          | :self

  @spec distribution(distribution()) :: Doctor.check()
  def distribution(%{node: node, longnames: longnames}) do
    mode = if longnames, do: "long names", else: "short names"
    check("distribution", :ok, "#{node}, #{mode}")
  end

  def distribution(nil) do
    check(
      "distribution",
      :fail,
      "this node is not distributed",
      "start it with a name: `-sname app` in vm.args (or RELEASE_DISTRIBUTION=sname in rel/env.sh.eex)"
    )
  end

  @spec epmd_module(epmd()) :: Doctor.check()
  def epmd_module(%{module: PodDist.Epmd, problem: %{detail: detail, fix: fix}, mode: mode}) do
    check(
      "epmd module",
      :fail,
      "PodDist.Epmd, #{mode} mode, running as the stock one since boot: #{detail}",
      fix
    )
  end

  def epmd_module(%{module: PodDist.Epmd, mode: mode}),
    do: check("epmd module", :ok, "PodDist.Epmd, #{mode} mode")

  def epmd_module(%{module: other}) do
    check(
      "epmd module",
      :warn,
      "#{inspect(other)}: pod names as node hosts will not resolve from other pods",
      "add `-epmd_module Elixir.PodDist.Epmd` to vm.args, or name nodes by IP (host: :ip)"
    )
  end

  @doc "The NIF did not load: nothing else can be checked; `problem` says which file and build."
  @spec nif(%{detail: String.t(), fix: String.t()}) :: Doctor.check()
  def nif(%{detail: detail, fix: fix}), do: check("NIF", :fail, detail, fix)

  @doc "The configuration was invalid, or no watch could start from it."
  @spec configuration(term()) :: Doctor.check()
  def configuration(reason) do
    check(
      "configuration",
      :fail,
      reason,
      "set api_url (or run in a pod with a service account, or point KUBECONFIG at a kubeconfig)"
    )
  end

  @doc "Every check of what the doctor's watch saw, in order."
  @spec cluster(cluster(), keyword()) :: [Doctor.check()]
  def cluster(cluster, config) do
    %{health: health, synced: synced, pods: pods, own: own} = cluster

    [api(health, synced, cluster.waited)] ++
      restarts(health) ++
      Enum.map(cluster.access, fn {scope, namespace, access} ->
        rbac(scope, namespace, access, config)
      end) ++
      service(config[:service], health, synced, pods) ++
      [pods(pods, config, own), own_pod(own, cluster.own_host, config)]
  end

  @spec api(map(), boolean(), non_neg_integer()) :: Doctor.check()
  def api(health, true, _waited) do
    check(
      "API server",
      :ok,
      "#{health.api_url}, #{health.credentials} credentials, TLS verified, #{health.pods} pods"
    )
  end

  def api(health, false, waited) do
    detail = health.last_error || "no answer within #{waited} ms"

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

  @doc """
  A watch that died was restarted, and has listed again if the API check passed; but
  it died of a bug, which is worth reporting. Silent while it never died.
  """
  @spec restarts(map()) :: [Doctor.check()]
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

  @doc """
  The scopes whose access is checked, each on its own watch (a 403 only tells which
  namespace first failed): `{label, namespace or nil for all, namespaces to watch}`.
  """
  @spec access_scopes(map()) :: [{String.t(), String.t() | nil, [String.t()] | :all}]
  def access_scopes(%{namespaces: :all}), do: [{"all namespaces", nil, :all}]
  def access_scopes(%{namespaces: list}), do: Enum.map(list, &{inspect(&1), &1, [&1]})

  @doc "RBAC in one scope; on a 403, the fix is the Role to apply (`PodDist.Doctor.Role`)."
  @spec rbac(String.t(), String.t() | nil, access(), keyword()) :: Doctor.check()
  def rbac(scope, _namespace, :ok, config),
    do: check("RBAC in #{scope}", :ok, "get, list and watch on #{resource(config)} allowed")

  def rbac(scope, namespace, {:failed, health}, config) do
    fix =
      if health.error == :forbidden,
        do: Role.yaml(namespace, health.service_account, config[:service])

    check("RBAC in #{scope}", :fail, health.last_error || "no answer", fix)
  end

  def rbac(scope, _namespace, {:error, reason}, _config),
    do: check("RBAC in #{scope}", :fail, inspect(reason))

  defp source_resource(%{source: {:service, _}}), do: "endpointslices"
  defp source_resource(_health), do: "pods"

  defp resource(config), do: if(config[:service], do: "endpointslices", else: "pods")

  @doc """
  The slice source: the Service's slices must name pods. The nodes' Role reads slices
  only, not Services: no slice at all says the Service is missing, has no selector
  (the controller writes slices only for a Service with one) or selects nothing.
  """
  @spec service(String.t() | nil, map(), boolean(), [map()]) :: [Doctor.check()]
  def service(nil, _health, _synced, _pods), do: []
  def service(_service, _health, false, _pods), do: []

  def service(service, health, true, []) do
    namespace = List.first(List.wrap(health.namespaces))

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
  end

  def service(service, health, true, pods) do
    namespace = List.first(List.wrap(health.namespaces))

    [
      check(
        "service #{service}",
        :ok,
        "#{length(pods)} pods from its EndpointSlices in namespace #{inspect(namespace)}"
      )
    ]
  end

  @doc "The pods seen, and why each that is not eligible is not."
  @spec pods([map()], keyword(), map() | nil) :: Doctor.check()
  def pods(pods, config, own) do
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

  @doc "This node's own pod (`own`, looked up as `own_host`): found, and eligible."
  @spec own_pod(map() | nil, String.t(), keyword()) :: Doctor.check()
  def own_pod(nil, own_host, _config) do
    check(
      "own pod",
      :warn,
      "no watched pod is named #{own_host}",
      "set own_pod:, or watch the namespace and labels this pod has"
    )
  end

  def own_pod(pod, _own_host, config) do
    case why_not(pod, config, pod) do
      nil ->
        check("own pod", :ok, "#{pod.namespace}/#{pod.name} #{ip(pod.ip)}, eligible")

      why ->
        check(
          "own pod",
          :warn,
          "#{pod.namespace}/#{pod.name} is #{why}: this node waits before reaching out",
          "wait for the pod to become Ready (see its readinessProbe)"
        )
    end
  end

  @doc """
  The pods whose nodes are checked (every eligible one, our own pod too: the other
  nodes in it are candidates as well), at most #{@max_candidates}, and how many more
  were left out.
  """
  @spec candidates([map()], keyword(), map() | nil) :: {[map()], non_neg_integer()}
  def candidates(pods, config, own) do
    {checked, skipped} =
      pods
      |> Enum.filter(&(why_not(&1, config, own) == nil))
      |> Enum.split(@max_candidates)

    {checked, length(skipped)}
  end

  @doc """
  The node checks: for each candidate pod its nodes and how each answered (this node
  itself is not checked), then how many pods were left out. `nil` when this node is not
  distributed: then nothing was probed.
  """
  @spec nodes([{map(), [{node(), probe()}]}] | nil, non_neg_integer()) :: [Doctor.check()]
  def nodes(nil, _skipped),
    do: [check("nodes", :warn, "not checked: this node is not distributed")]

  def nodes(probed, skipped) do
    checks = Enum.flat_map(probed, fn {pod, nodes} -> candidate(pod, nodes) end)

    if skipped == 0,
      do: checks,
      else: checks ++ [check("nodes", :ok, "#{skipped} more eligible pods not checked")]
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

  defp candidate(_pod, nodes),
    do: for({node, probe} <- nodes, probe != :self, do: node(node, probe))

  @doc "One node, from how it answered the probes."
  @spec node(node(), probe()) :: Doctor.check()
  def node(node, {:ok, ip, port, true}) do
    check("node #{node}", :ok, "#{host(node)} -> #{ip(ip)}, port #{port} answers, connected")
  end

  def node(node, {:ok, ip, port, false}) do
    check(
      "node #{node}",
      :warn,
      "#{host(node)} -> #{ip(ip)}, port #{port} answers, not connected (the doctor does not connect)",
      "the strategy connects eligible pods' nodes: see its log for failed connects " <>
        "(then check the cookie, the same RELEASE_COOKIE everywhere, and the TLS " <>
        "distribution settings); a node whose pod is leaving connects to nobody"
    )
  end

  def node(node, {:error, step, why}),
    do: check("node #{node}", :fail, "#{step(step)}: #{inspect(why)}", fix_for(step))

  defp step({:resolve, host}), do: "resolve #{host}"
  defp step({:epmd, ip, name}), do: "epmd at #{ip(ip)} (port 4369) for #{name}"
  defp step({:dist_port, ip, port}), do: "distribution port #{ip(ip)}:#{port}"

  defp fix_for({:resolve, _}),
    do: "the host is no watched pod: check host:, namespaces and label_selector"

  defp fix_for({:epmd, _, _}),
    do:
      "the node is not running or not registered; in a pod with several nodes use epmd-less mode"

  defp fix_for({:dist_port, _, _}),
    do:
      "the node does not listen there: check its dist port (epmd-less: its dist-<basename> port)"

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

  defp host(node), do: PodDist.NodeName.host(node)

  defp ip(nil), do: "no IP"
  defp ip(ip), do: ip |> :inet.ntoa() |> to_string()

  defp check(name, status, detail, fix \\ nil),
    do: %{name: name, status: status, detail: detail, fix: fix}
end
