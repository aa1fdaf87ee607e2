defmodule PodDist.Epmd.ListenPort do
  @moduledoc false
  # Which port an epmd-less node listens on, decided from what is known at boot. Peers
  # dial the port the node's pod declares, so the node must listen exactly there; when
  # that cannot be known, it must not listen at all.

  @typedoc """
  What is known of the node's own pod: `{:pod, declared}` with the port it declares for
  the node (`PodDist.Watch.node_address/4`: the native side decides which declaration
  applies), `:no_pod` (the list is in and no pod has the node's host, or the host cannot
  be a pod: peers use the default port), `:no_watch` (PodDist.Epmd runs without its
  index), `:unknown` (the list is not in) or `:not_asked` (`POD_DIST_LISTEN_PORT` is
  set, so the pod is not looked up: no wait at boot).
  """
  @type own_pod ::
          {:pod, {:inet.port_number(), :own | :shared} | nil}
          | :no_pod
          | :no_watch
          | :unknown
          | :not_asked

  @typedoc """
  `{:exact, port}`: listen there. `{:if_free, port}`: listen there unless the port is
  taken in the pod, then anywhere (the port is shared by every node of the container or
  pod: the one taking it first is the one peers dial; a later one, like a remote shell,
  needs no inbound connection). `:unknown`: refuse to start distribution.
  """
  @type choice :: {:exact, :inet.port_number()} | {:if_free, :inet.port_number()} | :unknown

  @spec choose(:inet.port_number() | nil, own_pod(), :inet.port_number()) :: choice()
  def choose(env_port, _own, _default) when is_integer(env_port), do: {:if_free, env_port}
  def choose(nil, :unknown, _default), do: :unknown
  def choose(nil, {:pod, {port, :own}}, _default), do: {:exact, port}
  def choose(nil, {:pod, {port, :shared}}, _default), do: {:if_free, port}
  def choose(nil, _no_port_no_pod_or_no_watch, default), do: {:if_free, default}
end
