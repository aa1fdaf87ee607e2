defmodule PodDist.Strategy.Config do
  @moduledoc """
  The options of `PodDist.Strategy`, and their validation: `validate/2` checks the
  strategy's own options, a pure function of the config and the epmd mode;
  `validate/1` also has the NIF check the watch options (those of `PodDist.Watch`).

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
  """

  @defaults [
    host: :pod_name,
    eligible: :ready,
    keep_terminating: false,
    disconnect_deleted: true,
    reconcile_interval: 30_000,
    connect_timeout: 5_000,
    version_label: nil,
    node_basename: nil,
    nodes: nil,
    own_pod: nil
  ]

  @strategy_keys Keyword.keys(@defaults)
  @host_forms [:pod_name, :ip, :dashed_ip, :hostname_fqdn]

  @doc "The forms of a node name's host part that `host:` may ask for."
  @spec host_forms() :: [atom()]
  def host_forms, do: @host_forms

  @doc """
  The validated config with defaults filled in, or `{:error, message}`: the watch
  options checked by the NIF (which must be loaded), the rest by `validate/2` under
  this node's epmd mode.
  """
  @spec validate(term()) :: {:ok, keyword()} | {:error, String.t()}
  def validate(config) do
    with {:ok, config} <- validate(config, PodDist.Epmd.mode()),
         options = watch_options(config),
         :ok <- check_watch(options) do
      check_source(config, PodDist.Watch.labels?(options))
    end
  end

  defp check_watch(options) do
    case PodDist.Watch.check_options(options) do
      :ok -> :ok
      {:error, why} -> {:error, "PodDist.Strategy config: #{why}"}
    end
  end

  @doc """
  The config with defaults filled in (`nodes:` defaults by `mode`, the epmd mode), or
  `{:error, message}`. Watch options, and whether the source gives what the config
  reads (labels, annotations), are left to `validate/1`.
  """
  @spec validate(term(), :epmd | :epmdless) :: {:ok, keyword()} | {:error, String.t()}
  def validate(config, mode) do
    cond do
      keyword?(config) -> validate_strategy(Keyword.merge(@defaults, config), mode)
      # Not echoed: it may hold a token.
      is_list(config) -> {:error, "PodDist.Strategy config must be a keyword list"}
      true -> {:error, "PodDist.Strategy config must be a keyword list, got #{inspect(config)}"}
    end
  end

  defp keyword?(config) do
    is_list(config) and not List.improper?(config) and
      Enum.all?(config, &match?({key, _} when is_atom(key), &1))
  end

  defp validate_strategy(config, mode) do
    config
    |> Keyword.take(@strategy_keys)
    |> Enum.find_value({:ok, with_default_nodes(config, mode)}, fn {key, value} ->
      case check(key, value) do
        :ok ->
          nil

        {:error, why} ->
          {:error, "PodDist.Strategy config #{inspect(key)}: #{why}, got #{inspect(value)}"}
      end
    end)
  end

  # What reads pod labels or annotations needs a source whose pods carry them
  # (`PodDist.Watch.labels?/1` says which does).
  defp check_source(config, labels?) do
    needs_pods =
      not labels? && Enum.find([:nodes, :version_label], &reads_pod_metadata?(&1, config[&1]))

    case needs_pods do
      falsy when falsy in [nil, false] ->
        {:ok, config}

      key ->
        {:error,
         "PodDist.Strategy config #{inspect(key)}: #{inspect(config[key])} reads pod " <>
           "labels or annotations, which only the pods source has; with :service " <>
           "(the EndpointSlice source) use nodes: :epmd, :declared or {:basename, name}, " <>
           "and no :version_label; or watch pods (no :service)"}
    end
  end

  defp reads_pod_metadata?(:nodes, {kind, _}) when kind in [:label, :annotation], do: true
  defp reads_pod_metadata?(:version_label, value), do: is_binary(value)
  defp reads_pod_metadata?(_, _), do: false

  @doc "The options of the underlying `PodDist.Watch`."
  @spec watch_options(keyword()) :: keyword()
  def watch_options(config),
    do: config |> Keyword.drop(@strategy_keys) |> Enum.reject(&is_nil(elem(&1, 1)))

  defp with_default_nodes(config, mode) do
    cond do
      config[:nodes] -> config
      config[:node_basename] -> Keyword.put(config, :nodes, {:basename, config[:node_basename]})
      mode == :epmdless -> Keyword.put(config, :nodes, :declared)
      true -> Keyword.put(config, :nodes, :epmd)
    end
  end

  defp check(key, value) when key in [:node_basename, :own_pod], do: string_or_nil(value)
  defp check(:host, value) when value in @host_forms, do: :ok

  defp check(:host, _) do
    {last, others} = @host_forms |> Enum.map(&inspect/1) |> List.pop_at(-1)
    {:error, "must be #{Enum.join(others, ", ")} or #{last}"}
  end

  defp check(:eligible, value) when value in [:ready, :running], do: :ok
  defp check(:eligible, _), do: {:error, "must be :ready or :running"}

  defp check(key, value)
       when key in [:keep_terminating, :disconnect_deleted] and is_boolean(value),
       do: :ok

  defp check(key, value)
       when key in [:reconcile_interval, :connect_timeout] and is_integer(value) and value > 0,
       do: :ok

  defp check(:version_label, value), do: string_or_nil(value)

  defp check(:nodes, value) when value in [nil, :epmd, :declared] or is_function(value, 1),
    do: :ok

  defp check(:nodes, {kind, key})
       when kind in [:label, :annotation, :basename] and is_binary(key),
       do: :ok

  defp check(:nodes, _),
    do:
      {:error,
       "must be :epmd, :declared, {:basename, name}, {:label, key}, {:annotation, key} or a 1-arity function"}

  defp check(key, _) when key in [:keep_terminating, :disconnect_deleted],
    do: {:error, "must be a boolean"}

  defp check(key, _) when key in [:reconcile_interval, :connect_timeout],
    do: {:error, "must be a positive integer (ms)"}

  defp string_or_nil(value) when is_binary(value) or is_nil(value), do: :ok
  defp string_or_nil(_), do: {:error, "must be a string"}
end
