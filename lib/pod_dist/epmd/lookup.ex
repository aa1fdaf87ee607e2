defmodule PodDist.Epmd.Lookup do
  @moduledoc false
  # How both modes ask the pod index, with the bounded boot wait PodDist.Epmd's moduledoc
  # describes: before the first list, a host that may be a pod waits for it, up to the
  # deadline settled at start, unless it is our own host or the asker is net_kernel.

  alias PodDist.Epmd.Boot

  @typedoc "What a `PodDist.Watch` lookup answers."
  @type answer :: {:ok, :inet.ip_address()} | {:ok, :inet.ip_address(), term()}

  @doc """
  Asks the index through `ask.(watch, host)` (one of `PodDist.Watch`'s lookups). `:later`
  for net_kernel before the first list (see `in_net_kernel?/0`); `:error` when the index
  has no answer, there is no index, or the lookup raised (a bug in the native code raises
  `:nif_panicked`; a host the NIF cannot take, `ArgumentError`): the caller falls back to
  the stock resolver, as it would without PodDist.
  """
  @spec find(term(), (PodDist.Watch.t(), PodDist.Watch.host() -> term())) ::
          answer() | :later | :error
  def find(host, ask) do
    case Boot.watch() do
      %PodDist.Watch{} = watch -> find(watch, host_term(host), ask, true)
      nil -> :error
    end
  rescue
    _ -> :error
  end

  defp find(watch, host, ask, may_wait?) do
    case ask.(watch, host) do
      {:ok, _ip} = found ->
        found

      {:ok, _ip, _detail} = found ->
        found

      # The list is not in and the host may be a pod (the NIF decides which hosts may):
      # wait, once per boot at most, unless it is our own host, or we are net_kernel.
      {:error, :not_synced} when may_wait? ->
        cond do
          own_host?(host) -> :error
          in_net_kernel?() -> :later
          Boot.await_sync(watch) -> find(watch, host, ask, false)
          true -> :error
        end

      _ ->
        :error
    end
  end

  @doc "The address family of an IP, or for a name the one the distribution runs on."
  @spec family_of(term()) :: :inet | :inet6
  def family_of(ip) when tuple_size(ip) == 8, do: :inet6
  def family_of(ip) when tuple_size(ip) == 4, do: :inet

  def family_of(_name) do
    case :init.get_argument(:proto_dist) do
      {:ok, [[~c"inet6" ++ _ | _] | _]} -> :inet6
      _ -> :inet
    end
  end

  @doc "The shape of an address for net_kernel's select/1, which reads no address from it."
  @spec unspecified(:inet | :inet6) :: :inet.ip_address()
  def unspecified(:inet6), do: {0, 0, 0, 0, 0, 0, 0, 0}
  def unspecified(_inet), do: {0, 0, 0, 0}

  @doc "A host as the index takes it: IPs as text."
  @spec host_term(term()) :: PodDist.Watch.host()
  def host_term(ip) when is_tuple(ip), do: :inet.ntoa(ip)
  def host_term(host), do: host

  # net_kernel asks (through the dist module's select/1) only whether the distribution
  # can handle a node name, and the whole node waits while it does: it never waits here.
  # A name that may be a pod is then answered `:later` (yes, without an address), and the
  # connection's own setup process, which net_kernel does not wait on, asks again and
  # waits for the list (within net_setuptime) for the real address.
  defp in_net_kernel?, do: Process.whereis(:net_kernel) == self()

  defp own_host?(host) do
    own = PodDist.NodeName.host(node())
    String.downcase(to_string(host)) == String.downcase(own)
  end
end
