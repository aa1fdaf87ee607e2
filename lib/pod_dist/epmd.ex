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

  ## Chosen once at boot

  The mode, the default port and the deadline are read from the environment once,
  when the distribution starts this module (`start_link/0`), and kept in one
  `:persistent_term` entry with the pod watch: every callback then hands over to the
  mode's module without reading the environment again. Changing `POD_DIST_*` in a
  running node changes nothing until the distribution starts again (it keeps its watch).

  ## When something fails

  If the NIF cannot load (missing `priv/pod_dist_nif.so`, built for another libc or
  architecture) or the pod watch cannot start, the node still boots: in epmd mode
  everything goes to the stock `:erl_epmd`; epmd-less, hosts resolve through the stock
  resolver on `POD_DIST_DIST_PORT` and the node listens on `POD_DIST_LISTEN_PORT` (else
  that port). The problem and its fix are printed once on the console and
  `PodDist.doctor/0` reports them (`problem/0`).
  """

  alias PodDist.Epmd.{Boot, Env, Epmdless, LocalEpmd, Mode}

  @typedoc "`:epmd` or `:epmdless`."
  @type mode :: :epmd | :epmdless

  @typep name :: Mode.name()
  @typep host :: Mode.host()

  ## The erl_epmd callbacks: each hands over to the module of the mode chosen at boot
  ## (PodDist.Epmd.Mode is their contract).

  @doc false
  @spec start_link() :: {:ok, pid()} | :ignore | {:error, term()}
  def start_link do
    Boot.start()
    mode_module().start_link()
  end

  @doc false
  @spec register_node(name(), :inet.port_number()) :: {:ok, integer()} | {:error, term()}
  def register_node(name, port), do: register_node(name, port, :inet)

  @doc false
  @spec register_node(name(), :inet.port_number(), Mode.family()) ::
          {:ok, integer()} | {:error, term()}
  def register_node(name, port, family), do: mode_module().register_node(name, port, family)

  @doc false
  @spec listen_port_please(name(), host()) :: {:ok, :inet.port_number()} | {:error, term()}
  def listen_port_please(name, host), do: mode_module().listen_port_please(name, host)

  @doc false
  @spec address_please(name(), host(), Mode.family()) ::
          {:ok, :inet.ip_address()}
          | {:ok, :inet.ip_address(), :inet.port_number(), pos_integer()}
          | {:error, term()}
  def address_please(name, host, family), do: mode_module().address_please(name, host, family)

  @doc false
  @spec port_please(name(), host()) :: Mode.port_answer()
  def port_please(name, ip), do: port_please(name, ip, :infinity)

  @doc false
  @spec port_please(name(), host(), timeout()) :: Mode.port_answer()
  def port_please(name, ip, timeout), do: mode_module().port_please(name, ip, timeout)

  @doc false
  @spec names(host()) :: {:ok, [{charlist(), :inet.port_number()}]} | {:error, term()}
  def names(host), do: mode_module().names(host)

  defp mode_module do
    case mode() do
      :epmd -> LocalEpmd
      :epmdless -> Epmdless
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
  def mode do
    case Boot.get() do
      %Boot{mode: mode} -> mode
      nil -> Env.mode()
    end
  end

  @doc "The watch the epmd module resolves through, once started."
  @spec watch() :: PodDist.Watch.t() | nil
  def watch, do: Boot.watch()

  @doc """
  What went wrong when the distribution started this module (the NIF did not load, or
  the watch did not start), with the fix; `nil` when nothing did.
  """
  @spec problem() :: PodDist.Epmd.Fallback.problem() | nil
  def problem do
    case Boot.get() do
      %Boot{problem: problem} -> problem
      nil -> nil
    end
  end

  @doc false
  # Loads the NIF, or says what is wrong with it and the fix (also for PodDist.Doctor).
  @spec load_nif() :: :ok | {:error, PodDist.Epmd.Fallback.problem()}
  defdelegate load_nif, to: Boot

  @doc false
  # The watch options POD_DIST_* ask for (also read by PodDist.Doctor).
  # PodDist.Watch validates them (an unusable value is a problem the node reports).
  @spec watch_options() :: keyword()
  defdelegate watch_options, to: Env
end
