defmodule PodDist.Strategy.Config do
  @moduledoc false
  # Validates PodDist.Strategy's keyword config, with an error that names the key.
  # Strategy keys are checked here; every other key is a watch option, which
  # PodDist.Watch.check_options/1 (the one watch option validator) checks.

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

  @doc "The validated config with defaults filled in, or `{:error, message}`."
  @spec validate(term()) :: {:ok, keyword()} | {:error, String.t()}
  def validate(config) do
    cond do
      keyword?(config) -> validate_keywords(config)
      # Not echoed: it may hold a token.
      is_list(config) -> {:error, "PodDist.Strategy config must be a keyword list"}
      true -> {:error, "PodDist.Strategy config must be a keyword list, got #{inspect(config)}"}
    end
  end

  defp keyword?(config) do
    is_list(config) and not List.improper?(config) and
      Enum.all?(config, &match?({key, _} when is_atom(key), &1))
  end

  defp validate_keywords(config) do
    config = Keyword.merge(@defaults, config)

    case PodDist.Watch.check_options(watch_options(config)) do
      :ok -> validate_strategy(config)
      {:error, why} -> {:error, "PodDist.Strategy config: #{why}"}
    end
  end

  defp validate_strategy(config) do
    config
    |> Keyword.take(@strategy_keys)
    |> Enum.find_value(check_source(config), fn {key, value} ->
      case check(key, value) do
        :ok ->
          nil

        {:error, why} ->
          {:error, "PodDist.Strategy config #{inspect(key)}: #{why}, got #{inspect(value)}"}
      end
    end)
  end

  # Slices carry no pod labels or annotations: what reads them needs the pods source.
  defp check_source(config) do
    needs_pods =
      not PodDist.Watch.labels?(watch_options(config)) &&
        Enum.find([:nodes, :version_label], &reads_pod_metadata?(&1, config[&1]))

    case needs_pods do
      falsy when falsy in [nil, false] ->
        {:ok, with_default_nodes(config)}

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

  defp with_default_nodes(config) do
    cond do
      config[:nodes] -> config
      config[:node_basename] -> Keyword.put(config, :nodes, {:basename, config[:node_basename]})
      PodDist.Epmd.mode() == :epmdless -> Keyword.put(config, :nodes, :declared)
      true -> Keyword.put(config, :nodes, :epmd)
    end
  end

  defp check(key, value) when key in [:node_basename, :own_pod], do: string_or_nil(value)
  defp check(:host, value) when value in [:pod_name, :ip, :dashed_ip, :hostname_fqdn], do: :ok
  defp check(:host, _), do: {:error, "must be :pod_name, :ip, :dashed_ip or :hostname_fqdn"}
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
