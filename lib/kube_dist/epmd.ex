defmodule KubeDist.Epmd do
  @moduledoc """
  An `-epmd_module` for Kubernetes: node names keep their pod names (`app@<pod-name>`)
  and every node can reach them, because the host part of a node name is resolved
  through KubeDist's pod index instead of DNS.

      # rel/vm.args.eex
      -epmd_module Elixir.KubeDist.Epmd
      # OTP 27+: -kernel epmd_module Elixir.KubeDist.Epmd

  It starts with the kernel, before any application and before application config is
  read, so it is configured by OS environment variables (set them in the pod spec,
  from the downward API if you like):

  | variable | default | meaning |
  |---|---|---|
  | `KUBE_DIST_MODE` | `epmd` | `epmd`: use each pod's epmd; `epmdless`: no epmd, ports come from the pod spec |
  | `KUBE_DIST_NAMESPACES` | the service account's namespace | comma-separated namespaces to resolve pods in, or `*` |
  | `KUBE_DIST_LABEL_SELECTOR` | none | only pods matching it resolve |
  | `KUBE_DIST_CLUSTER_DOMAIN` | from `/etc/resolv.conf`, else `cluster.local` | for qualified names |
  | `KUBE_DIST_DIST_PORT` | `4370` | epmd-less: the port of a node its pod does not declare |
  | `KUBE_DIST_SYNC_TIMEOUT_MS` | `5000` | how long the first lookup waits for the pod list |
  | `KUBE_DIST_API_URL`, `KUBE_DIST_CA_FILE`, `KUBE_DIST_TOKEN_FILE`, `KUBE_DIST_SERVICE_ACCOUNT_DIR`, `KUBE_DIST_KUBECONFIG` | in-cluster | where the API is (see `KubeDist.Watch`) |

  ## Resolution

  `address_please/3` answers from the index for any host form a pod has (`web-0`,
  `web-0.prod`, `10-42-2-46.prod.pod.cluster.local`, `web-0.db.prod.svc.cluster.local`,
  ...), as cluster DNS would from this pod's namespace (the first of
  `KUBE_DIST_NAMESPACES`; with `*`, the service account's), with the pod's address of
  the family asked for (IPv6 under `-proto_dist inet6_tcp`). A host that is not a pod
  falls through to the stock resolver (`/etc/hosts`, DNS), so non-Kubernetes peers and
  the node's own name keep working. The first lookup waits, bounded by
  `KUBE_DIST_SYNC_TIMEOUT_MS`, for the initial pod list.

  ## epmd-less mode

  With `KUBE_DIST_MODE=epmdless` (and `-start_epmd false`), a pod declares its nodes as
  named container ports: a port named `dist-<basename>` is the distribution port of
  node `<basename>@<pod>`; a port named `dist` serves any basename. A node its pod does
  not declare listens on `KUBE_DIST_DIST_PORT`. Several BEAM containers in one pod then
  simply declare different ports, and no epmd is contended for.
  """

  @default_port 4370
  @default_sync_timeout 5_000
  # The distribution protocol version OTP 23+ speaks; returned with the port so the
  # dist module skips port_please/2 (epmd-less mode).
  @dist_version 6

  @typedoc "`:epmd` or `:epmdless`."
  @type mode :: :epmd | :epmdless

  ## The erl_epmd callback contract

  @doc false
  @spec start_link() :: {:ok, pid()} | :ignore | {:error, term()}
  def start_link do
    start_watch()
    # Read once: every connect needs them, and a running distribution cannot change
    # its mode anyway.
    :persistent_term.put({__MODULE__, :mode}, mode_from_env())
    :persistent_term.put({__MODULE__, :dist_port}, default_port_from_env())

    case mode() do
      :epmd -> :erl_epmd.start_link()
      :epmdless -> :ignore
    end
  end

  @typep name :: atom() | charlist() | String.t()
  @typep host :: atom() | charlist() | String.t() | :inet.ip_address()

  @doc false
  @spec register_node(name(), :inet.port_number()) :: {:ok, integer()} | {:error, term()}
  def register_node(name, port), do: register_node(name, port, :inet)

  @doc false
  @spec register_node(name(), :inet.port_number(), :inet | :inet6) ::
          {:ok, integer()} | {:error, term()}
  def register_node(name, port, family) do
    case mode() do
      :epmd -> :erl_epmd.register_node(name, port, family)
      # No epmd to hand out a creation: -1 asks the VM for a random one.
      :epmdless -> {:ok, -1}
    end
  end

  @doc false
  @spec listen_port_please(name(), host()) :: {:ok, :inet.port_number()}
  def listen_port_please(name, host) do
    case mode() do
      :epmd -> :erl_epmd.listen_port_please(name, host)
      :epmdless -> {:ok, own_port(name, host)}
    end
  end

  @doc false
  @spec address_please(name(), host(), :inet | :inet6) ::
          {:ok, :inet.ip_address()}
          | {:ok, :inet.ip_address(), :inet.port_number(), pos_integer()}
          | {:error, term()}
  def address_please(name, host, family) do
    case mode() do
      # Every connect asks: epmd mode needs only the IP, not the whole pod.
      :epmd ->
        with :error <- lookup(host, false, family),
             do: :erl_epmd.address_please(name, host, family)

      :epmdless ->
        case lookup(host, {:port, name}, family) do
          {:ok, ip, port} -> {:ok, ip, port || default_port(), @dist_version}
          :error -> stock_address(host, family)
        end
    end
  end

  @doc false
  @spec port_please(name(), host()) :: {:port, :inet.port_number(), pos_integer()} | :noport
  def port_please(name, ip), do: port_please(name, ip, :infinity)

  @doc false
  @spec port_please(name(), host(), timeout()) ::
          {:port, :inet.port_number(), pos_integer()} | :noport | {:error, term()}
  def port_please(name, ip, timeout) do
    case mode() do
      :epmd ->
        :erl_epmd.port_please(name, ip, timeout)

      :epmdless ->
        port =
          with(
            {:ok, _, port} <- lookup(ip, {:port, name}, family_of(ip)),
            do: port,
            else: (_ -> nil)
          )

        {:port, port || default_port(), @dist_version}
    end
  end

  @doc false
  @spec names(host()) :: {:ok, [{charlist(), :inet.port_number()}]} | {:error, term()}
  def names(host) do
    case {mode(), lookup(host, :ports, family_of(host))} do
      {:epmd, {:ok, ip, _}} -> :erl_epmd.names(ip)
      {:epmd, _} -> :erl_epmd.names(host)
      {:epmdless, {:ok, _, ports}} when ports != nil -> {:ok, declared_nodes(ports)}
      {:epmdless, _} -> {:error, :address}
    end
  end

  ## Public helpers

  @doc """
  The nodes a pod declares for epmd-less mode, as `{basename, port}` with charlist
  basenames (as `names/1` returns them). A port named `dist` is listed as `~c"*"`.
  """
  @spec declared_nodes(KubeDist.Watch.pod() | [map()]) :: [{charlist(), :inet.port_number()}]
  def declared_nodes(%{ports: ports}), do: declared_nodes(ports)

  def declared_nodes(ports) when is_list(ports) do
    for %{name: name, port: port} <- ports,
        basename = declared_basename(name),
        do: {basename, port}
  end

  @doc """
  The mode in force: `KUBE_DIST_MODE` as it was when the distribution started this
  module (read from the environment while it has not).
  """
  @spec mode() :: mode()
  def mode, do: :persistent_term.get({__MODULE__, :mode}, nil) || mode_from_env()

  defp mode_from_env do
    case System.get_env("KUBE_DIST_MODE", "epmd") do
      "epmdless" -> :epmdless
      _ -> :epmd
    end
  end

  @doc "The watch the epmd module resolves through, once started."
  @spec watch() :: KubeDist.Watch.t() | nil
  def watch, do: :persistent_term.get({__MODULE__, :watch}, nil)

  ## Internals

  defp declared_basename("dist-" <> basename) when basename != "",
    do: String.to_charlist(basename)

  defp declared_basename("dist"), do: ~c"*"
  defp declared_basename(_), do: nil

  # Our own listen port: what our pod declares for our name, found by our host name.
  # A port shared by every basename (`dist`, or the default) may already be taken by a
  # sibling, typically the node a remote shell attaches to: then listen anywhere, since
  # nobody needs to reach a remote shell.
  defp own_port(name, host) do
    ports =
      with(
        {:ok, _ip, ports} when ports != nil <- lookup(host, :ports, family_of(host)),
        do: ports,
        else: (_ -> [])
      )

    declared = declared_nodes(ports)

    case List.keyfind(declared, to_charlist(name), 0) || List.keyfind(declared, ~c"*", 0) do
      {~c"*", port} -> free_or_any(port)
      {_, port} -> port
      nil -> free_or_any(default_port())
    end
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
      {:ok, ip} -> {:ok, ip, default_port(), @dist_version}
      {:error, _} = error -> error
    end
  end

  # `with`: false for the IP alone, `{:port, basename}` for a node's epmd-less port,
  # `:ports` for the pod's declared ports, true for the pod. `family`: the address
  # wanted, :inet or :inet6.
  defp lookup(host, with, family) do
    with %KubeDist.Watch{resource: resource} = watch <- watch(),
         :ok <- await_sync(watch),
         {:ok, _, _} = found <-
           KubeDist.Native.resolve(resource, host_term(host), with, family) do
      found
    else
      {:ok, ip} -> {:ok, ip}
      _ -> :error
    end
  end

  # The family of an address, or for a name the one the distribution runs on
  # (`-proto_dist inet6_tcp` or `inet6_tls`: IPv6).
  defp family_of(ip) when tuple_size(ip) == 8, do: :inet6
  defp family_of(ip) when tuple_size(ip) == 4, do: :inet

  defp family_of(_name) do
    case :init.get_argument(:proto_dist) do
      {:ok, [[~c"inet6" ++ _ | _] | _]} -> :inet6
      _ -> :inet
    end
  end

  # The NIF takes a host as the distribution hands it over (charlist, atom or string).
  defp host_term(ip) when is_tuple(ip), do: :inet.ntoa(ip)
  defp host_term(host), do: host

  # Only the first caller waits; later ones find the watch synced or give up at once.
  defp await_sync(watch) do
    case :persistent_term.get({__MODULE__, :synced}, false) do
      true ->
        :ok

      false ->
        if KubeDist.Watch.await_synced(watch, sync_timeout()) do
          :persistent_term.put({__MODULE__, :synced}, true)
        end

        :ok
    end
  end

  defp start_watch do
    if watch() == nil do
      case KubeDist.Watch.start(watch_options()) do
        {:ok, watch} ->
          :persistent_term.put({__MODULE__, :watch}, watch)

        {:error, reason} ->
          # Never standard_error at boot (it stops the kernel); the VM's own console is safe.
          :erlang.display_string(
            ~c"KubeDist.Epmd: cannot watch pods, falling back to DNS: #{reason}\n"
          )
      end
    end

    :ok
  end

  @doc false
  # The watch options KUBE_DIST_* ask for (also read by KubeDist.Doctor).
  @spec watch_options() :: keyword()
  def watch_options do
    env = fn name -> System.get_env(name) end

    namespaces =
      case env.("KUBE_DIST_NAMESPACES") do
        nil -> nil
        "*" -> :all
        list -> list |> String.split(",", trim: true) |> Enum.map(&String.trim/1)
      end

    [
      namespaces: namespaces,
      label_selector: env.("KUBE_DIST_LABEL_SELECTOR"),
      cluster_domain: env.("KUBE_DIST_CLUSTER_DOMAIN"),
      api_url: env.("KUBE_DIST_API_URL"),
      ca_file: env.("KUBE_DIST_CA_FILE"),
      token_file: env.("KUBE_DIST_TOKEN_FILE"),
      service_account_dir: env.("KUBE_DIST_SERVICE_ACCOUNT_DIR"),
      kubeconfig: env.("KUBE_DIST_KUBECONFIG")
    ]
    |> Enum.reject(fn {_, value} -> is_nil(value) end)
  end

  defp default_port,
    do: :persistent_term.get({__MODULE__, :dist_port}, nil) || default_port_from_env()

  defp default_port_from_env, do: env_integer("KUBE_DIST_DIST_PORT", @default_port)
  defp sync_timeout, do: env_integer("KUBE_DIST_SYNC_TIMEOUT_MS", @default_sync_timeout)

  defp env_integer(name, default) do
    case Integer.parse(System.get_env(name, "")) do
      {value, ""} when value >= 0 -> value
      _ -> default
    end
  end
end
