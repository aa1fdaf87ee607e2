defmodule PodDist.Strategy.Nodes do
  @moduledoc false
  # The node names each pod stands for (which pods are eligible is
  # PodDist.Strategy.Core's rule). Pure functions, except :epmd naming, which asks the
  # pod's epmd (PodDist.Strategy.EpmdNames: bounded in size and time).

  require Logger
  alias PodDist.Strategy.EpmdNames

  # Names from a peer's epmd become atoms: only plausible ones, and not too many.
  @valid_basename ~r/\A[A-Za-z0-9_.-]{1,64}\z/
  @max_per_pod 16

  @doc "How many names a pod may stand for, in all (each becomes an atom)."
  @spec max_per_pod() :: pos_integer()
  def max_per_pod, do: @max_per_pod

  @doc """
  The node names `pod` stands for. `known` are the names it stood for before: they are
  reused, and a pod gets new atoms only up to 16 names in all, however often its
  answer changes (a hostile epmd could otherwise hand out fresh names on every ask).
  Short-lived names (remote shells, `rpc` nodes: `PodDist.Strategy.Core.short_lived?/1`)
  are left out before any atom is made.

  A pod without a host of the form `config[:host]` (see `t:PodDist.Watch.hosts/0`)
  stands for no node.
  """
  @spec names(PodDist.Watch.pod(), keyword(), [node()]) :: [node()]
  def names(pod, config, known \\ []) do
    case host(pod, config) do
      nil -> []
      host -> names(pod, host, config, known)
    end
  end

  @doc """
  Names `pod` in a process of its own (its epmd can be slow or hang) and calls `reply`
  there with `{:named, uid, nodes}`, or `{:naming_failed, uid, reason}` if naming
  crashed (a `nodes:` function raising, a name over 255 characters).
  """
  @spec name_async(PodDist.Watch.pod(), keyword(), [node()], (tuple() -> term())) :: pid()
  def name_async(pod, config, known, reply) do
    spawn(fn ->
      {_pid, ref} = spawn_monitor(fn -> exit({:shutdown, names(pod, config, known)}) end)

      receive do
        {:DOWN, ^ref, :process, _, {:shutdown, nodes}} ->
          reply.({:named, pod.uid, nodes})

        {:DOWN, ^ref, :process, _, reason} ->
          reply.({:naming_failed, pod.uid, Exception.format_exit(reason)})
      end
    end)
  end

  defp names(pod, host, config, known) do
    known = Map.new(known, &{Atom.to_string(&1), &1})

    pod
    |> basenames(config[:nodes], config[:connect_timeout])
    |> Enum.filter(&(valid_basename?(&1) and not PodDist.Strategy.Core.short_lived?(&1)))
    |> Enum.map(&"#{&1}@#{host}")
    |> Enum.uniq()
    |> Enum.reduce({[], @max_per_pod - map_size(known)}, fn name, {nodes, budget} ->
      case known do
        %{^name => node} -> {[node | nodes], budget}
        _ when budget > 0 -> {[String.to_atom(name) | nodes], budget - 1}
        _ -> {nodes, budget}
      end
    end)
    |> elem(0)
    |> Enum.reverse()
  end

  defp basenames(_pod, {:basename, name}, _timeout), do: [name]
  defp basenames(pod, {:label, key}, _timeout), do: split(Map.get(pod.labels, key))
  defp basenames(pod, {:annotation, key}, _timeout), do: split(Map.get(pod.annotations, key))

  defp basenames(pod, fun, _timeout) when is_function(fun, 1) do
    pod |> fun.() |> List.wrap() |> Enum.map(&PodDist.NodeName.basename/1)
  end

  defp basenames(pod, :declared, _timeout) do
    for {basename, _port} <- pod.dist_ports, is_binary(basename), do: basename
  end

  defp basenames(%{ip: nil}, :epmd, _timeout), do: []

  defp basenames(pod, :epmd, timeout) do
    case EpmdNames.names(pod.ip, timeout: timeout) do
      {:ok, names} ->
        for {name, _port} <- names, do: name

      # An answer without end (or too slow to finish): no names, and whoever runs the
      # cluster hears of it once per pod.
      {:error, reason} when reason in [:too_large, :timeout] ->
        warn_once(pod, reason, timeout)
        []

      {:error, _} ->
        []
    end
  end

  # Pods already warned about, by uid: a small set, kept until it is full (then started
  # again), written only when a pod misbehaves for the first time.
  @warned {__MODULE__, :warned}
  @max_warned 1_024

  defp warn_once(pod, reason, timeout) do
    warned = :persistent_term.get(@warned, MapSet.new())

    unless MapSet.member?(warned, pod.uid) do
      warned = if MapSet.size(warned) >= @max_warned, do: MapSet.new(), else: warned
      :persistent_term.put(@warned, MapSet.put(warned, pod.uid))

      what =
        case reason do
          :too_large -> "answered with more than 64 KiB"
          :timeout -> "did not finish its answer within #{timeout} ms"
        end

      Logger.warning(
        "PodDist: the epmd of pod #{pod.namespace}/#{pod.name} (#{:inet.ntoa(pod.ip)}) " <>
          "#{what} when asked for its node names; it stands for no node. " <>
          "Check what listens on its epmd port."
      )
    end
  end

  defp split(nil), do: []
  defp split(value), do: value |> String.split(",", trim: true) |> Enum.map(&String.trim/1)

  defp valid_basename?(name), do: is_binary(name) and Regex.match?(@valid_basename, name)

  @doc """
  The host part of `pod`'s node names, in the form `config[:host]` asks for; `nil` when
  the pod has none (the native side builds every form, next to the parser that reads
  them back).
  """
  @spec host(PodDist.Watch.pod(), keyword()) :: String.t() | nil
  def host(pod, config), do: pod.hosts[config[:host]]
end
