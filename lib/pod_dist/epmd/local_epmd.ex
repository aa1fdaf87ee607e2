defmodule PodDist.Epmd.LocalEpmd do
  @moduledoc false
  # PodDist.Epmd's epmd mode (`POD_DIST_MODE=epmd`): each pod runs its epmd; nodes
  # register with their own, as with the stock erl_epmd, and a peer's host resolves from
  # the pod index, then its port from that pod's epmd.

  @behaviour PodDist.Epmd.Mode

  alias PodDist.Epmd.Lookup

  @impl true
  def start_link, do: :erl_epmd.start_link()

  @impl true
  def register_node(name, port, family), do: :erl_epmd.register_node(name, port, family)

  @impl true
  def listen_port_please(name, host), do: :erl_epmd.listen_port_please(name, host)

  @impl true
  def address_please(name, host, family) do
    case Lookup.find(host, &PodDist.Watch.resolve(&1, &2, family)) do
      :later -> {:ok, Lookup.unspecified(family)}
      :error -> :erl_epmd.address_please(name, host, family)
      found -> found
    end
  end

  @impl true
  def port_please(name, ip, timeout), do: :erl_epmd.port_please(name, ip, timeout)

  # The pod's own epmd tells, asked at the pod's address.
  @impl true
  def names(host) do
    case Lookup.find(host, &PodDist.Watch.resolve(&1, &2, Lookup.family_of(host))) do
      {:ok, ip} -> :erl_epmd.names(ip)
      _ -> :erl_epmd.names(host)
    end
  end
end
