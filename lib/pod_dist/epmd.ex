defmodule PodDist.Epmd do
  @moduledoc """
  An `-epmd_module` for Kubernetes: node names keep their pod names (`app@<pod-name>`)
  and every node can reach them, because the host part of a node name is resolved
  through PodDist's pod index instead of DNS.

      # rel/vm.args.eex
      -epmd_module Elixir.PodDist.Epmd
      # or, on OTP 27+, the kernel parameter (an Erlang term: quote the atom)
      -kernel epmd_module "'Elixir.PodDist.Epmd'"

  It starts with the kernel, before any application and before application config is
  read, so it is configured by OS environment variables (set them in the pod spec,
  from the downward API if you like):

  | variable | default | meaning |
  |---|---|---|
  | `POD_DIST_MODE` | `epmd` | `epmd`: use each pod's epmd; `epmdless`: no epmd, ports come from the pod spec |
  | `POD_DIST_NAMESPACES` | the service account's namespace | comma-separated namespaces to resolve pods in, or `*` |
  | `POD_DIST_LABEL_SELECTOR` | none | only pods matching it resolve |
  | `POD_DIST_SERVICE` | none | read the EndpointSlices of this headless Service instead of pods (one namespace; no access to pods needed; no `POD_DIST_LABEL_SELECTOR`) |
  | `POD_DIST_SLICE_MANAGED_BY` | `endpointslice-controller.k8s.io` | with `POD_DIST_SERVICE`: whose slices to trust (see `PodDist.Watch`'s `:slice_managed_by`) |
  | `POD_DIST_CLUSTER_DOMAIN` | from `/etc/resolv.conf`, else `cluster.local` | for qualified names |
  | `POD_DIST_DIST_PORT` | `4370` | epmd-less: the port of a node its pod does not declare |
  | `POD_DIST_LISTEN_PORT` | none | epmd-less: this container's listen port, its `dist-<basename>` containerPort (set it: then the node needs no API at boot) |
  | `POD_DIST_SYNC_TIMEOUT_MS` | `5000` | how long after boot lookups may wait for the first pod list |
  | `POD_DIST_API_URL`, `POD_DIST_CA_FILE`, `POD_DIST_TOKEN_FILE`, `POD_DIST_SERVICE_ACCOUNT_DIR`, `POD_DIST_KUBECONFIG` | in-cluster | where the API is (see `PodDist.Watch`; a `POD_DIST_API_URL` that is not the in-cluster API server needs `POD_DIST_TOKEN_FILE`) |

  ## Resolution

  `address_please/3` answers from the index for any host form a pod has (`web-0`,
  `web-0.prod`, `10-42-2-46.prod.pod.cluster.local`, `web-0.db.prod.svc.cluster.local`,
  ...), as cluster DNS would from this pod's namespace (the first of
  `POD_DIST_NAMESPACES`; with `*`, the service account's), with the pod's address of
  the family asked for (IPv6 under `-proto_dist inet6_tcp`). A host that is not a pod
  falls through to the stock resolver (`/etc/hosts`, DNS), so non-Kubernetes peers and
  the node's own name keep working.

  Until the first pod list is in, a lookup of a host that may be a pod waits for it, but
  only until one deadline fixed at boot (`POD_DIST_SYNC_TIMEOUT_MS` after this module
  started), shared by every caller, in a `receive` that holds no scheduler. IPs,
  `localhost`, the node's own host and names no pod can have never wait. Past the
  deadline, lookups answer at once from whatever the index holds until the list is in.

  `net_kernel` itself never waits: it asks only whether a name can be dialled (the dist
  module's `select/1`), and every connect and disconnect of the node queues behind it.
  Before the first list, a name that may be a pod is accepted there at once, and the
  wait happens in that connection's setup process (bounded by the deadline and by
  `net_setuptime`), which net_kernel does not wait on. So a connect attempt holds
  net_kernel for one index lookup, or, for a name no pod has, for the stock resolver's
  lookup, as it would without this module.

  ## epmd-less mode

  With `POD_DIST_MODE=epmdless` (and `-start_epmd false`), a pod declares its nodes as
  named container ports: a port named `dist-<basename>` is the distribution port of
  node `<basename>@<pod>`; a port named `dist` serves any basename. A node its pod does
  not declare listens on `POD_DIST_DIST_PORT`. Several BEAM containers in one pod then
  simply declare different ports, and no epmd is contended for.

  A node listens on `POD_DIST_LISTEN_PORT` when the container sets it (its
  `dist-<basename>` containerPort; if that port is already taken in the pod, as by the
  node a remote shell attaches to, anywhere: nobody dials a remote shell). Otherwise it
  waits for its own pod, up to the deadline above; if the pod is still not listed then,
  it refuses to start distribution, saying why, rather than listen where nobody dials.

  ## When something fails

  If the NIF cannot load (missing `priv/pod_dist_nif.so`, built for another libc or
  architecture) or the pod watch cannot start, the node still boots: in epmd mode
  everything goes to the stock `:erl_epmd`; epmd-less, hosts resolve through the stock
  resolver on `POD_DIST_DIST_PORT` and the node listens on `POD_DIST_LISTEN_PORT` (else
  that port). The problem and its fix are printed once on the console and
  `PodDist.doctor/0` reports them (`problem/0`).
  """

  alias PodDist.Epmd.{Fallback, ListenPort}

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
    # Read once: every connect needs them, and a running distribution cannot change
    # its mode anyway. The deadline is the one bound on every wait for the first list.
    :persistent_term.put({__MODULE__, :mode}, mode_from_env())
    :persistent_term.put({__MODULE__, :dist_port}, default_port_from_env())
    :persistent_term.put({__MODULE__, :deadline}, now() + sync_timeout())
    start_watch()

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
  @spec listen_port_please(name(), host()) :: {:ok, :inet.port_number()} | {:error, term()}
  def listen_port_please(name, host) do
    case mode() do
      :epmd -> :erl_epmd.listen_port_please(name, host)
      :epmdless -> own_port(name, host)
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
        case lookup(host, &PodDist.Native.address(&1, &2, family)) do
          :later -> {:ok, unspecified(family)}
          :error -> :erl_epmd.address_please(name, host, family)
          found -> found
        end

      :epmdless ->
        case lookup(host, &PodDist.Native.node_address(&1, &2, name, family)) do
          {:ok, ip, {port, _declared}} -> {:ok, ip, port, @dist_version}
          {:ok, ip, nil} -> {:ok, ip, default_port(), @dist_version}
          :later -> {:ok, unspecified(family), default_port(), @dist_version}
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
            {:ok, _, {port, _declared}} <-
              lookup(ip, &PodDist.Native.node_address(&1, &2, name, family_of(ip))),
            do: port,
            else: (_ -> nil)
          )

        {:port, port || default_port(), @dist_version}
    end
  end

  @doc false
  @spec names(host()) :: {:ok, [{charlist(), :inet.port_number()}]} | {:error, term()}
  def names(host) do
    family = family_of(host)

    case mode() do
      :epmd ->
        case lookup(host, &PodDist.Native.address(&1, &2, family)) do
          {:ok, ip} -> :erl_epmd.names(ip)
          _ -> :erl_epmd.names(host)
        end

      :epmdless ->
        case lookup(host, &PodDist.Native.lookup(&1, &2, family)) do
          {:ok, _, %{} = pod} -> {:ok, declared_nodes(pod)}
          _ -> {:error, :address}
        end
    end
  end

  ## Public helpers

  @doc """
  The nodes a pod declares for epmd-less mode, as `{basename, port}` with charlist
  basenames (as `names/1` returns them). A port named `dist` is listed as `~c"*"`.
  Which ports these are is the pod's `dist_ports` (the native side's rule).
  """
  @spec declared_nodes(PodDist.Watch.pod()) :: [{charlist(), :inet.port_number()}]
  def declared_nodes(%{dist_ports: dist_ports}) do
    for {basename, port} <- dist_ports,
        do: {if(basename == :any, do: ~c"*", else: String.to_charlist(basename)), port}
  end

  @doc """
  The mode in force: `POD_DIST_MODE` as it was when the distribution started this
  module (read from the environment while it has not).
  """
  @spec mode() :: mode()
  def mode, do: :persistent_term.get({__MODULE__, :mode}, nil) || mode_from_env()

  defp mode_from_env do
    case System.get_env("POD_DIST_MODE", "epmd") do
      "epmdless" -> :epmdless
      _ -> :epmd
    end
  end

  @doc "The watch the epmd module resolves through, once started."
  @spec watch() :: PodDist.Watch.t() | nil
  def watch, do: :persistent_term.get({__MODULE__, :watch}, nil)

  @doc """
  What went wrong when the distribution started this module (the NIF did not load, or
  the watch did not start), with the fix; `nil` when nothing did.
  """
  @spec problem() :: PodDist.Epmd.Fallback.problem() | nil
  def problem, do: :persistent_term.get({__MODULE__, :problem}, nil)

  ## Internals

  # Our own listen port (epmd-less): see PodDist.Epmd.ListenPort.
  defp own_port(name, host) do
    name = to_charlist(name)

    env_port = listen_port_from_env()
    # The pod spec's variable makes the API unnecessary at boot: then nothing waits for it.
    own = if env_port, do: :not_asked, else: own_pod(name, host)

    case ListenPort.choose(env_port, own, default_port()) do
      {:exact, port} ->
        {:ok, port}

      {:if_free, port} ->
        {:ok, free_or_any(port)}

      :unknown ->
        problem = Fallback.unknown_port("#{name}@#{host}", sync_timeout(), last_api_error())
        :erlang.display_string(Fallback.console(problem, "distribution does not start"))
        {:error, String.to_charlist(problem.detail)}
    end
  end

  # What the index knows of our own pod; waits (up to the deadline) for the first list.
  defp own_pod(name, host) do
    case watch() do
      nil -> :no_watch
      %PodDist.Watch{} = watch -> own_pod(watch, name, host_term(host), false)
    end
  end

  defp own_pod(watch, name, host, waited?) do
    # Read before asking: then a "not yet" below cannot come from a list that completed
    # in between (taken for "no pod of ours", that sent the node to the default port).
    listed? = PodDist.Watch.await_synced(watch, 0)

    case PodDist.Native.node_address(watch.resource, host, name, family_of(host)) do
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
        await_then(watch, fn -> own_pod(watch, name, host, true) end)
    end
  end

  defp await_then(watch, next) do
    await_sync(watch)
    next.()
  end

  defp last_api_error do
    case watch() do
      nil -> nil
      watch -> PodDist.Watch.health(watch).last_error
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

  # `ask.(resource, host)`: one of PodDist.Native's lookups (the IP alone, a node's
  # epmd-less port, the pod). Without an index: `:error`, and the caller falls back to
  # the stock resolver.
  defp lookup(host, ask) do
    case watch() do
      %PodDist.Watch{} = watch -> lookup(watch, host_term(host), ask, true)
      nil -> :error
    end
  end

  defp lookup(watch, host, ask, may_wait?) do
    case ask.(watch.resource, host) do
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
          await_sync(watch) -> lookup(watch, host, ask, false)
          true -> :error
        end

      _ ->
        :error
    end
  end

  # net_kernel asks (through the dist module's select/1) only whether the distribution
  # can handle a node name, and the whole node waits while it does: it never waits here.
  # A name that may be a pod is then answered `:later` (yes, without an address), and the
  # connection's own setup process, which net_kernel does not wait on, asks again and
  # waits for the list (within net_setuptime) for the real address.
  defp in_net_kernel?, do: Process.whereis(:net_kernel) == self()

  # The shape of an answer for select/1, which reads no address from it.
  defp unspecified(:inet6), do: {0, 0, 0, 0, 0, 0, 0, 0}
  defp unspecified(_inet), do: {0, 0, 0, 0}

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

  defp own_host?(host) do
    own = PodDist.NodeName.host(node())
    String.downcase(to_string(host)) == String.downcase(own)
  end

  # Waits for the first list until the deadline fixed at boot: true once it is in. Every
  # caller shares that deadline, so a boot waits once at most; past it, nobody waits.
  # The wait is a `receive` (the NIF messages us from its runtime): no scheduler is held.
  defp await_sync(watch) do
    remaining = :persistent_term.get({__MODULE__, :deadline}, 0) - now()
    remaining > 0 and PodDist.Watch.await_synced(watch, remaining)
  end

  defp now, do: System.monotonic_time(:millisecond)

  defp start_watch do
    if watch() == nil do
      case start_watch_safely() do
        {:ok, watch} ->
          :persistent_term.put({__MODULE__, :watch}, watch)

        {:error, problem} ->
          :persistent_term.put({__MODULE__, :problem}, problem)
          instead = Fallback.instead(mode(), default_port(), listen_port_from_env())
          # Never standard_error at boot (it stops the kernel); the VM's own console is safe.
          :erlang.display_string(Fallback.console(problem, instead))
      end
    end

    :ok
  end

  # Whatever fails here, the node must boot: every failure becomes a problem to report.
  defp start_watch_safely do
    with :ok <- load_nif() do
      case PodDist.Watch.start(watch_options()) do
        {:ok, watch} -> {:ok, watch}
        {:error, reason} -> {:error, Fallback.watch(reason)}
      end
    end
  catch
    kind, reason -> {:error, Fallback.watch(Exception.format_banner(kind, reason))}
  end

  @doc false
  # Loads the NIF, or says what is wrong with it and the fix (also for PodDist.Doctor).
  @spec load_nif() :: :ok | {:error, Fallback.problem()}
  def load_nif do
    case PodDist.Native.load() do
      :ok ->
        :ok

      {:error, {path, text}} ->
        # :prim_file: the kernel's file server is not up yet while distribution starts.
        exists? = match?({:ok, _}, :prim_file.read_file_info(~c"#{path}.so"))
        {:error, Fallback.nif(path, text, exists?)}
    end
  end

  @doc false
  # The watch options POD_DIST_* ask for (also read by PodDist.Doctor).
  # PodDist.Watch validates them (an unusable value is a problem the node reports).
  @spec watch_options() :: keyword()
  def watch_options do
    env = fn name -> System.get_env(name) end

    namespaces =
      case env.("POD_DIST_NAMESPACES") do
        nil -> nil
        "*" -> :all
        list -> list |> String.split(",", trim: true) |> Enum.map(&String.trim/1)
      end

    [
      namespaces: namespaces,
      label_selector: env.("POD_DIST_LABEL_SELECTOR"),
      service: env.("POD_DIST_SERVICE"),
      slice_managed_by: env.("POD_DIST_SLICE_MANAGED_BY"),
      cluster_domain: env.("POD_DIST_CLUSTER_DOMAIN"),
      api_url: env.("POD_DIST_API_URL"),
      ca_file: env.("POD_DIST_CA_FILE"),
      token_file: env.("POD_DIST_TOKEN_FILE"),
      service_account_dir: env.("POD_DIST_SERVICE_ACCOUNT_DIR"),
      kubeconfig: env.("POD_DIST_KUBECONFIG")
    ]
    |> Enum.reject(fn {_, value} -> is_nil(value) end)
  end

  defp default_port,
    do: :persistent_term.get({__MODULE__, :dist_port}, nil) || default_port_from_env()

  defp default_port_from_env, do: env_integer("POD_DIST_DIST_PORT", @default_port)

  defp listen_port_from_env do
    case env_integer("POD_DIST_LISTEN_PORT", nil) do
      port when is_integer(port) and port in 1..65_535 -> port
      _ -> nil
    end
  end

  defp sync_timeout, do: env_integer("POD_DIST_SYNC_TIMEOUT_MS", @default_sync_timeout)

  defp env_integer(name, default) do
    case Integer.parse(System.get_env(name, "")) do
      {value, ""} when value >= 0 -> value
      _ -> default
    end
  end
end
