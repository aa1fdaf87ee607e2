defmodule PodDist.Epmd.Epmdless do
  @moduledoc false
  # PodDist.Epmd's epmd-less mode (`POD_DIST_MODE=epmdless`): no epmd anywhere; a node's
  # port is the one its pod declares for it (PodDist.Epmd's moduledoc has the rules),
  # else the default port.

  @behaviour PodDist.Epmd.Mode

  alias PodDist.Epmd.{Boot, Env, Fallback, ListenPort, Lookup}
  alias PodDist.Watch

  # The distribution protocol version OTP 23+ speaks; returned with the port so the
  # dist module skips port_please/2.
  @dist_version 6

  @impl true
  def start_link, do: :ignore

  # No epmd to hand out a creation: -1 asks the VM for a random one.
  @impl true
  def register_node(_name, _port, _family), do: {:ok, -1}

  @impl true
  def listen_port_please(name, host) do
    name = to_charlist(name)
    env_port = Env.listen_port()
    # The pod spec's variable makes the API unnecessary at boot: then nothing waits for it.
    own = if env_port, do: :not_asked, else: own_pod(name, host)

    case ListenPort.choose(env_port, own, Boot.dist_port()) do
      {:exact, port} -> {:ok, port}
      {:if_free, port} -> {:ok, free_or_any(port)}
      :unknown -> refuse("#{name}@#{host}")
    end
  end

  @impl true
  def address_please(name, host, family) do
    case Lookup.find(host, &Watch.node_address(&1, &2, name, family)) do
      {:ok, ip, {port, _declared}} -> {:ok, ip, port, @dist_version}
      {:ok, ip, nil} -> {:ok, ip, Boot.dist_port(), @dist_version}
      :later -> {:ok, Lookup.unspecified(family), Boot.dist_port(), @dist_version}
      :error -> stock_address(host, family)
    end
  end

  @impl true
  def port_please(name, ip, _timeout) do
    case Lookup.find(ip, &Watch.node_address(&1, &2, name, Lookup.family_of(ip))) do
      {:ok, _ip, {port, _declared}} -> {:port, port, @dist_version}
      _ -> {:port, Boot.dist_port(), @dist_version}
    end
  end

  # The nodes the pod declares: there is no epmd to ask.
  @impl true
  def names(host) do
    case Lookup.find(host, &Watch.lookup(&1, &2, Lookup.family_of(host))) do
      {:ok, _ip, %{} = pod} -> {:ok, PodDist.Epmd.declared_nodes(pod)}
      _ -> {:error, :address}
    end
  end

  # What the index knows of our own pod; waits (up to the deadline) for the first list.
  defp own_pod(name, host) do
    case Boot.watch() do
      nil -> :no_watch
      watch -> own_pod(watch, name, Lookup.host_term(host), false)
    end
  end

  defp own_pod(watch, name, host, waited?) do
    # Read before asking: then a "not yet" below cannot come from a list that completed
    # in between (taken for "no pod of ours", that sent the node to the default port).
    listed? = Watch.await_synced(watch, 0)

    case Watch.node_address(watch, host, name, Lookup.family_of(host)) do
      # Our pod is listed (a pod only shows once the first list is in).
      {:ok, _ip, declared} when declared != nil or listed? ->
        {:pod, declared}

      # A host that cannot be a pod, or the list is in and has no such pod.
      answer when answer == :error or answer == {:error, :ambiguous} ->
        :no_pod

      # An IP no listed pod holds: the list was in before we asked.
      _not_ours when listed? ->
        :no_pod

      # The list is not in (`:not_synced`, or an IP no pod holds yet).
      _not_yet when waited? ->
        :unknown

      _not_yet ->
        Boot.await_sync(watch)
        own_pod(watch, name, host, true)
    end
  end

  defp refuse(node) do
    api_error = with %Watch{} = watch <- Boot.watch(), do: Watch.health(watch).last_error
    problem = Fallback.unknown_port(node, Boot.get().sync_timeout, api_error)
    :erlang.display_string(Fallback.console(problem, "distribution does not start"))
    {:error, String.to_charlist(problem.detail)}
  end

  defp free_or_any(port) do
    interface =
      case :application.get_env(:kernel, :inet_dist_use_interface) do
        {:ok, ip} -> [ip: ip]
        :undefined -> []
      end

    case :gen_tcp.listen(port, [reuseaddr: true] ++ interface) do
      {:ok, socket} -> :gen_tcp.close(socket) && port
      {:error, :eaddrinuse} -> 0
      {:error, _} -> port
    end
  end

  defp stock_address(host, family) do
    case :inet.getaddr(to_charlist(host), family) do
      {:ok, ip} -> {:ok, ip, Boot.dist_port(), @dist_version}
      {:error, _} = error -> error
    end
  end
end
