defmodule KubeDist.Epmd.ListenPort do
  @moduledoc false
  # Which port an epmd-less node listens on, decided from what is known at boot. Peers
  # dial the port the node's pod declares, so the node must listen exactly there; when
  # that cannot be known, it must not listen at all.

  @typedoc """
  What is known of the node's own pod: its `dist_ports`, `:no_pod` (the list is in and
  no pod has the node's host, or the host cannot be a pod: peers use the default port),
  `:no_watch` (KubeDist.Epmd runs without its index) or `:unknown` (the list is not in).
  """
  @type own_pod ::
          {:pod, [{String.t() | :any, :inet.port_number()}]} | :no_pod | :no_watch | :unknown

  @typedoc """
  `{:exact, port}`: listen there. `{:if_free, port}`: listen there unless the port is
  taken in the pod, then anywhere (the port is shared by every node of the container or
  pod: the one taking it first is the one peers dial; a later one, like a remote shell,
  needs no inbound connection). `:unknown`: refuse to start distribution.
  """
  @type choice :: {:exact, :inet.port_number()} | {:if_free, :inet.port_number()} | :unknown

  @spec choose(charlist(), :inet.port_number() | nil, own_pod(), :inet.port_number()) :: choice()
  def choose(_name, env_port, _own, _default) when is_integer(env_port), do: {:if_free, env_port}
  def choose(_name, nil, :unknown, _default), do: :unknown

  # Its own `dist-<basename>` port first, else the shared `dist` one, as peers dial it.
  def choose(name, nil, {:pod, dist_ports}, default) do
    case List.keyfind(dist_ports, List.to_string(name), 0) || List.keyfind(dist_ports, :any, 0) do
      {:any, port} -> {:if_free, port}
      {_, port} -> {:exact, port}
      nil -> {:if_free, default}
    end
  end

  def choose(_name, nil, _no_pod_or_no_watch, default), do: {:if_free, default}
end
