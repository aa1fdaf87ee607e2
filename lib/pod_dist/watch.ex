defmodule PodDist.Watch do
  @moduledoc """
  A live view of the pods in some namespaces, kept current by a Kubernetes watch
  running in native code.

  `start/1` connects to the API server (explicit options, else the in-cluster service
  account, else a kubeconfig) and lists then watches pods. Watches with the same
  options and the same credentials are shared (two tokens are two watches, each reading
  with its own rights); the watch stops when the last `t:t/0` referring to it is
  garbage-collected and none of its subscribers is alive.

      {:ok, watch} = PodDist.Watch.start(namespaces: ["prod"], label_selector: "app=api")
      true = PodDist.Watch.await_synced(watch, 5_000)
      PodDist.Watch.pods(watch)
      #=> [%PodDist.Pod{name: "api-7d9c", namespace: "prod", ip: {10, 42, 2, 46}, ready: true, ...}]

  ## Options

    * `:namespaces` - list of namespaces (one named twice is watched once), or `:all`.
      Default: the service account's namespace (or the kubeconfig context's), else
      `"default"`.
    * `:label_selector`, `:field_selector` - Kubernetes selector strings.
    * `:service` - the source: the EndpointSlices of this headless Service (in the first
      of `:namespaces`, else the service account's namespace) instead of pods. The
      credentials then need `get`, `list`, `watch` on `endpointslices`
      (`discovery.k8s.io`) and nothing on pods. Records carry no labels or annotations;
      `:label_selector` and `:field_selector` are refused with it (the Service's selector
      picks the pods). Use `publishNotReadyAddresses: true` so pods are known before they
      are ready. Only slices written by the EndpointSlice controller are read (the watch
      asks the server for those labelled `endpointslice.kubernetes.io/managed-by:
      endpointslice-controller.k8s.io`), and only their endpoints whose `targetRef` is a
      Pod of the slice's own namespace: a slice someone else writes cannot point a pod's
      name at another address, nor make a node believe its pod is gone.
    * `:slice_managed_by` - with `:service`: the `managed-by` value of the slices to read,
      for clusters whose slices another controller writes (a service mesh, a custom
      controller). Default `"endpointslice-controller.k8s.io"`. Risk: whoever may create
      or edit EndpointSlices in the namespace can write that label, and then decides which
      address each pod's name resolves to and which pods exist. Set it only to a
      controller you trust, and restrict `create`/`update` on `endpointslices` in the
      namespace to it.
    * `:api_url` - API server URL (default: in-cluster, then the kubeconfig); with it,
      `:ca_file` (the CA bundle to verify the server; default the service account's
      `ca.crt`) and `:token_file` (re-read on a 401 and every minute, for rotation) or
      `:token` (a bearer token, never logged; prefer `:token_file`). Which token goes where: the in-cluster API server (`KUBERNETES_SERVICE_HOST`, or
      `kubernetes.default.svc`) gets the pod's service-account token when none is named;
      any other `:api_url` gets only the credentials named for it (`:token_file`,
      `:token`, or the token of a named `:service_account_dir`): when none is named and
      the pod has a service-account token, `start/1` refuses with `{:error, reason}`
      rather than send that token to another server.
    * `:service_account_dir` - where the service account is mounted
      (default `/var/run/secrets/kubernetes.io/serviceaccount`).
    * `:kubeconfig` - kubeconfig path (default `KUBECONFIG`, then `~/.kube/config`).
    * `:cluster_domain` - the cluster DNS domain for qualified names. Default: read from
      the search list of `/etc/resolv.conf` inside a pod (`<namespace>.svc.<domain>
      svc.<domain> <domain>`), else `"cluster.local"`. `health/1` says which is used.

  ## Errors

  A bad argument raises `ArgumentError` with a message that names it: options that are
  not a keyword list (an improper list too), an unknown option, a value of the wrong
  type, options that do not go together (`:label_selector` with `:service`), an address
  family other than `:inet` or `:inet6`, a handle that is not one. A token is never
  echoed, by the message or by the stacktrace (raised from this module, which lists no
  option values). `check_options/1` says the same without raising (`{:error, message}`) and
  without starting anything.

  What the cluster answers is a value, never an exception: `start/1` returns
  `{:error, message}` when no client can be made (no credentials found, an `:api_url`
  that is no URL, a pod's service-account token that would go to another server); the
  lookups return `:error` or `{:error, :ambiguous | :not_synced}`; a failing API shows
  in `health/1` and as `{:api_error, message}` events while the watch retries.

  A bug in the native code (a Rust panic) raises `ErlangError` with `:nif_panicked`
  (the panic's message goes to the VM's standard error); the VM and the watch live on.

  TLS verification of the API server cannot be turned off.

  ## What it costs the API server

  The initial state comes from the API server's watch cache, never from a quorum read
  of etcd: on Kubernetes 1.32+ as a streaming list (one watch with
  `sendInitialEvents=true`; the watch is synced, for `await_synced/2` and everything
  that waits on it, at the bookmark that ends the initial events), on older servers as
  a list with `resourceVersion=0` followed by a watch. Which one the server serves is
  learnt once per watch: a server that rejects streaming lists costs one refused
  request, one that accepts them but never ends the initial events is given up on after
  10 s without an event. Only the list that follows a `410 Gone` (the watch fell too far
  behind) is a quorum read, one per `410`.

  Staleness: the watch cache lags etcd by the time an event takes to reach it
  (milliseconds on a healthy control plane; behind an HA control plane, another API
  server's cache may lag more). A first list from it can be that much older than the
  cluster; the watch that follows starts from that list's resourceVersion and delivers
  every change since, so the view is current once the watch's first events are in, as
  it would be after a quorum read that a change raced.

  A `429 Too Many Requests` (API Priority and Fairness shedding load) is waited out:
  the next request waits the response's `Retry-After`, at most 60 s, on top of the
  usual backoff; `health/1` says `error: :throttled` meanwhile.
  """

  @enforce_keys [:resource]
  defstruct [:resource]

  @typedoc "A handle on a running watch."
  @type t :: %__MODULE__{resource: reference()}

  @typedoc "An indexed pod: a `t:PodDist.Pod.t/0`."
  @type pod :: PodDist.Pod.t()

  @typedoc "The host part of a pod's node names in each form: `t:PodDist.Pod.hosts/0`."
  @type hosts :: PodDist.Pod.hosts()

  @typedoc """
  What the watch's last failure was: the API server could not be reached, its
  certificate is not signed by the configured CA, it rejected the credentials (401) or
  denied access to pods (403), answered another HTTP status, no client could be made
  from the configuration, the watch itself died (a bug) and is being restarted, or the
  API server's priority and fairness answered `429 Too Many Requests` (`:throttled`: the
  watch waits the server's `Retry-After`, at most 60 s, on top of its backoff).
  """
  @type error ::
          :unreachable
          | :certificate
          | :unauthorized
          | :forbidden
          | {:status, pos_integer()}
          | :client
          | :crashed
          | :throttled

  @typedoc """
  How a watch is doing (see `health/1`); `source` is `:pods`, or `{:service, name}` for
  the EndpointSlices of a Service.
  """
  @type health :: %{
          synced: boolean(),
          last_sync: non_neg_integer() | nil,
          resource_version: String.t() | nil,
          errors: non_neg_integer(),
          last_error: String.t() | nil,
          error: error() | nil,
          service_account: {String.t(), String.t()} | nil,
          cluster_domain: String.t(),
          pods: non_neg_integer(),
          index_bytes: non_neg_integer(),
          api_url: String.t() | nil,
          credentials: String.t() | nil,
          namespaces: [String.t()] | :all,
          source: :pods | {:service, String.t()},
          restarts: non_neg_integer(),
          last_restart: String.t() | nil
        }

  @typedoc "What subscribers receive as `{:pod_dist, tag, event}`."
  @type event ::
          {:added, PodDist.Pod.t()}
          | {:changed, old :: PodDist.Pod.t(), new :: PodDist.Pod.t()}
          | {:deleted, PodDist.Pod.t()}
          | :synced
          | {:api_error, String.t()}

  @doc """
  Starts (or joins) a watch. See the module docs for options; bad ones raise
  `ArgumentError`. `{:error, message}` when no client can be made from them.
  """
  @spec start(keyword()) :: {:ok, t()} | {:error, String.t()}
  def start(options \\ []) do
    with {:ok, resource, started} <- with_options(&PodDist.Native.start_watch/1, options) do
      watch = %__MODULE__{resource: resource}
      # One reporter per watch, whoever started it (a shared watch reports once).
      if started == :new, do: PodDist.Telemetry.report_watch(watch)
      {:ok, watch}
    end
  end

  @doc """
  `:ok` if `start/1` would accept `options` (it may still fail to connect), else
  `{:error, message}` with the message of the `ArgumentError` `start/1` would raise.
  The one validator of watch options: `PodDist.Strategy` and `PodDist.Epmd` use it too.
  """
  @spec check_options(term()) :: :ok | {:error, String.t()}
  def check_options(options) do
    PodDist.Native.check_options(options)
  rescue
    error in ArgumentError -> {:error, Exception.message(error)}
  end

  @doc """
  Whether the pods a watch with `options` gives carry labels and annotations: those of
  the pods source do, those of the slice source (`:service`) do not. What reads pod
  labels (a label selector, `PodDist.Strategy`'s `nodes: {:label, key}`) needs the
  pods source. Bad options raise `ArgumentError`.
  """
  @spec labels?(keyword()) :: boolean()
  def labels?(options), do: with_options(&PodDist.Native.carries_labels/1, options)

  # Calls a NIF that takes options, raising what it raises (a bad option, a panic) again
  # from here: the stacktrace of an exception raised in a NIF holds the NIF's arguments,
  # and options may hold a token. One raised here holds none.
  defp with_options(nif, options) do
    nif.(options)
  rescue
    error -> raise error
  end

  @doc """
  Waits until the initial list is in, up to `timeout` milliseconds. Returns whether
  it is. The caller waits in a `receive` (the native side messages it), holding no
  scheduler.
  """
  @spec await_synced(t(), non_neg_integer()) :: boolean()
  def await_synced(%__MODULE__{resource: r}, timeout) when is_integer(timeout) and timeout >= 0 do
    tag = make_ref()
    :ok = PodDist.Native.notify_synced(r, self(), tag, timeout)

    # The answer always comes, at `timeout` at the latest; the margin only guards
    # against a runtime that stopped.
    receive do
      {^tag, synced} -> synced
    after
      timeout + 5_000 -> false
    end
  end

  @doc "Every indexed pod, sorted by namespace and name, from one consistent snapshot."
  @spec pods(t()) :: [PodDist.Pod.t()]
  def pods(%__MODULE__{resource: r}), do: PodDist.Native.list_pods(r)

  @doc """
  Sends `{:pod_dist, tag, event}` to `pid` for every change from now on, where `tag`
  is the returned reference. The subscription keeps the watch running for as long
  as `pid` lives, even if no handle on it is left, and ends when `pid` exits (a `pid`
  that is not alive subscribes nothing). If the watch is failing when `pid` subscribes,
  the current `{:api_error, message}` comes first.
  """
  @spec subscribe(t(), pid()) :: reference()
  def subscribe(%__MODULE__{resource: r}, pid \\ self()) when is_pid(pid) do
    tag = make_ref()
    :ok = PodDist.Native.subscribe(r, pid, tag)
    tag
  end

  @typedoc "A host name: a pod name or any other Kubernetes host form, or an IP."
  @type host :: String.t() | charlist() | atom()

  @typedoc "The address family asked for, as the distribution names it."
  @type family :: :inet | :inet6

  @doc """
  Resolves `host` to an IP of `family` (`:inet` for IPv4, `:inet6` for IPv6) from the
  index, without any network round trip.

  A name reaches a pod only where cluster DNS, asked from a pod of the watch's own
  namespace (the first one watched; when watching all, the one of the credentials),
  would: `web-0` in that namespace, `web-0.prod`, `web-0.prod.pod`,
  `10-42-2-46.prod.pod.cluster.local`, `web-0.db.prod.svc.cluster.local` (`spec.hostname`
  and `spec.subdomain`, or shorter prefixes of it), or an IP, a pod name standing where
  DNS has a service name. `{:error, :ambiguous}` when several pods share a hostname and
  subdomain. Every rule (`<domain>` is the cluster domain `health/1` reports):

  | host (any letter case, trailing dot allowed) | reaches, in this order; nothing else |
  |---|---|
  | `web-0` | pod `web-0` of the watch's own namespace |
  | `web-0.db` | the pod with `spec.hostname` `web-0` and `spec.subdomain` `db` in the own namespace; else pod `web-0` of namespace `db` |
  | `web-0.prod.pod`, `web-0.prod.pod.<domain>` | pod `web-0` of namespace `prod` |
  | `web-0.db.prod`, `web-0.db.prod.svc`, `web-0.db.prod.svc.<domain>` | the pod with hostname `web-0` and subdomain `db` in namespace `prod` |
  | `10-42-2-46.prod.pod`, `...pod.<domain>` (`fd00--2e...` for IPv6) | the pod of namespace `prod` that owns 10.42.2.46 |
  | `10.42.2.46`, `fd00::2e` | that IP, with the pod that owns it, if any |
  | anything else | nothing (`PodDist.Epmd` then asks the stock resolver: `/etc/hosts`, DNS) |

  Kubernetes reuses pod IPs, so every IP has one owner: a live pod over a terminating
  one over a Failed or Succeeded one, then the newest `creationTimestamp`, whatever
  order the list or the events came in. A pod resolves while it owns its address of
  `family`; a deleted pod stops resolving at once, a terminating one still resolves (so
  its connections drain) until its IP is given to another pod. A Failed or Succeeded pod
  never answers by IP, and by name only while no other pod holds its IP; a hostNetwork
  pod (its IP is its node's) answers by name, never by IP.

  Until the initial list is in, a host that may name a pod and is not found answers
  `{:error, :not_synced}` (never an IP, `localhost`, or a name no pod can have): it may
  resolve once the list is in.
  """
  @spec resolve(t(), host(), family()) ::
          {:ok, :inet.ip_address()} | :error | {:error, :ambiguous | :not_synced}
  def resolve(%__MODULE__{resource: r}, host, family \\ :inet) when family in [:inet, :inet6],
    do: PodDist.Native.address(r, to_host(host), family)

  @doc """
  Like `resolve/3`, also returning the pod (or `nil` for an IP no live pod owns).
  """
  @spec lookup(t(), host(), family()) ::
          {:ok, :inet.ip_address(), PodDist.Pod.t() | nil}
          | :error
          | {:error, :ambiguous | :not_synced}
  def lookup(%__MODULE__{resource: r}, host, family \\ :inet) when family in [:inet, :inet6],
    do: PodDist.Native.lookup(r, to_host(host), family)

  @doc """
  Like `resolve/3`, with the epmd-less port of node `basename@host`: the port its pod
  declares for it (`{port, :own}`: a `dist-<basename>` port) or for any basename
  (`{port, :shared}`: a `dist` port), `nil` when it declares none (or no pod owns the IP).
  """
  @spec node_address(t(), host(), String.t() | charlist() | atom(), family()) ::
          {:ok, :inet.ip_address(), {:inet.port_number(), :own | :shared} | nil}
          | :error
          | {:error, :ambiguous | :not_synced}
  def node_address(%__MODULE__{resource: r}, host, basename, family \\ :inet)
      when family in [:inet, :inet6],
      do: PodDist.Native.node_address(r, to_host(host), basename, family)

  defp to_host(host) when is_binary(host), do: host
  defp to_host(host) when is_list(host), do: List.to_string(host)
  defp to_host(host) when is_atom(host), do: Atom.to_string(host)

  @doc """
  How the watch is doing: sync state, newest resourceVersion, error count, the last
  error as text (`last_error`, for logs) and as a `t:error/0` (`error`; both cleared
  once the watch works again), the service account `{namespace, name}` the API named
  when it denied access (kept once learnt), pod count, index size, and what it
  watches: the API URL, where its credentials came from (`"explicit"`, `"in_cluster"`
  or `"kubeconfig"`), the namespaces (`:all` for every one) and the cluster DNS domain
  host names are read and built in.

  `restarts` counts how often the native watch died (a panic: a bug) and was restarted
  with backoff; `last_restart` says why, and stays after the watch has recovered. A
  restarted watch is not `synced` until it has listed every namespace again.
  """
  @spec health(t()) :: health()
  def health(%__MODULE__{resource: r}), do: PodDist.Native.health(r)

  ## For PodDist.Epmd, which starts before the application

  @doc false
  # Loads the NIF now if it is not yet: `{:error, {path, text}}` (the library's path
  # without `.so`, and the loader's words) when it cannot be. Never raises.
  @spec load_nif() :: :ok | {:error, {charlist(), charlist()}}
  def load_nif, do: PodDist.Native.load()
end
