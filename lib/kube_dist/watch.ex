defmodule KubeDist.Watch do
  @moduledoc """
  A live view of the pods in some namespaces, kept current by a Kubernetes watch
  running in native code.

  `start/1` connects to the API server (explicit options, else the in-cluster service
  account, else a kubeconfig) and lists then watches pods. Watches with the same
  options are shared; the watch stops when the last `t:t/0` referring to it is
  garbage-collected and none of its subscribers is alive.

      {:ok, watch} = KubeDist.Watch.start(namespaces: ["prod"], label_selector: "app=api")
      true = KubeDist.Watch.await_synced(watch, 5_000)
      KubeDist.Watch.pods(watch)
      #=> [%{name: "api-7d9c", namespace: "prod", ip: {10, 42, 2, 46}, ready: true, ...}]

  ## Options

    * `:namespaces` - list of namespaces, or `:all`. Default: the service account's
      namespace (or the kubeconfig context's), else `"default"`.
    * `:label_selector`, `:field_selector` - Kubernetes selector strings.
    * `:api_url` - API server URL; with it, `:ca_file` and `:token_file` (or `:token`).
    * `:service_account_dir` - where the service account is mounted
      (default `/var/run/secrets/kubernetes.io/serviceaccount`).
    * `:kubeconfig` - kubeconfig path (default `KUBECONFIG`, then `~/.kube/config`).
    * `:cluster_domain` - the cluster DNS domain for qualified names. Default: read from
      the search list of `/etc/resolv.conf` inside a pod, else `"cluster.local"`.

  TLS verification of the API server cannot be turned off.
  """

  @enforce_keys [:resource]
  defstruct [:resource]

  @typedoc "A handle on a running watch."
  @type t :: %__MODULE__{resource: reference()}

  @typedoc "An indexed pod."
  @type pod :: %{
          uid: String.t(),
          namespace: String.t(),
          name: String.t(),
          ip: :inet.ip_address() | nil,
          ips: [:inet.ip_address()],
          hostname: String.t() | nil,
          subdomain: String.t() | nil,
          node_name: String.t() | nil,
          phase: :pending | :running | :succeeded | :failed | :unknown,
          ready: boolean(),
          terminating: boolean(),
          labels: %{String.t() => String.t()},
          annotations: %{String.t() => String.t()},
          ports: [%{name: String.t() | nil, port: :inet.port_number(), container: String.t()}]
        }

  @typedoc "What subscribers receive as `{:kube_dist, tag, event}`."
  @type event ::
          {:added, pod()}
          | {:changed, old :: pod(), new :: pod()}
          | {:deleted, pod()}
          | :synced
          | {:api_error, String.t()}

  @string_options [
    :api_url,
    :ca_file,
    :token,
    :token_file,
    :service_account_dir,
    :kubeconfig,
    :label_selector,
    :field_selector,
    :cluster_domain
  ]

  # Every option a watch takes; KubeDist.Strategy passes these through.
  @doc false
  @spec option_keys() :: [atom()]
  def option_keys, do: [:namespaces | @string_options]

  @doc "Starts (or joins) a watch. See the module docs for options."
  @spec start(keyword()) :: {:ok, t()} | {:error, String.t()}
  def start(options \\ []) do
    with {:ok, map} <- validate(options),
         {:ok, resource} <- KubeDist.Native.start_watch(map) do
      {:ok, %__MODULE__{resource: resource}}
    end
  end

  @doc """
  Waits until the initial list is in, up to `timeout` milliseconds. Returns whether
  it is. The caller waits in a `receive` (the native side messages it), holding no
  scheduler.
  """
  @spec await_synced(t(), non_neg_integer()) :: boolean()
  def await_synced(%__MODULE__{resource: r}, timeout) when is_integer(timeout) and timeout >= 0 do
    tag = make_ref()

    case KubeDist.Native.notify_synced(r, self(), tag, timeout) do
      :ok ->
        # The answer always comes, at `timeout` at the latest; the margin only guards
        # against a runtime that stopped.
        receive do
          {^tag, synced} -> synced
        after
          timeout + 5_000 -> false
        end

      {:error, _} ->
        false
    end
  end

  @doc "Every indexed pod, sorted by namespace and name, from one consistent snapshot."
  @spec pods(t()) :: [pod()]
  def pods(%__MODULE__{resource: r}), do: KubeDist.Native.list_pods(r)

  @doc """
  Sends `{:kube_dist, tag, event}` to `pid` for every change from now on, where `tag`
  is the returned reference. The subscription keeps the watch running for as long
  as `pid` lives, even if no handle on it is left, and ends when `pid` exits. If the
  watch is failing when `pid` subscribes, the current `{:api_error, message}` comes first.
  """
  @spec subscribe(t(), pid()) :: reference()
  def subscribe(%__MODULE__{resource: r}, pid \\ self()) when is_pid(pid) do
    tag = make_ref()
    :ok = KubeDist.Native.subscribe(r, pid, tag)
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
  and `spec.subdomain`, or shorter prefixes of it), or an IP. The README's resolution
  table has every rule. `{:error, :ambiguous}` when several pods share a hostname and
  subdomain.

  Kubernetes reuses pod IPs, so every IP has one owner: a live pod over a terminating
  one over a Failed or Succeeded one, then the newest. A pod resolves while it owns
  its address of `family`; a deleted pod stops resolving at once, a terminating one
  still resolves (so its connections drain) until its IP is given to another pod.

  Until the initial list is in, a host that may name a pod and is not found answers
  `{:error, :not_synced}` (never an IP, `localhost`, or a name no pod can have): it may
  resolve once the list is in.
  """
  @spec resolve(t(), host(), family()) ::
          {:ok, :inet.ip_address()} | :error | {:error, :ambiguous | :not_synced}
  def resolve(%__MODULE__{resource: r}, host, family \\ :inet) when family in [:inet, :inet6],
    do: KubeDist.Native.resolve(r, to_host(host), false, family)

  @doc """
  Like `resolve/3`, also returning the pod (or `nil` for an IP no live pod owns).
  """
  @spec lookup(t(), host(), family()) ::
          {:ok, :inet.ip_address(), pod() | nil} | :error | {:error, :ambiguous | :not_synced}
  def lookup(%__MODULE__{resource: r}, host, family \\ :inet) when family in [:inet, :inet6],
    do: KubeDist.Native.resolve(r, to_host(host), true, family)

  defp to_host(host) when is_binary(host), do: host
  defp to_host(host) when is_list(host), do: List.to_string(host)
  defp to_host(host) when is_atom(host), do: Atom.to_string(host)

  @doc """
  How the watch is doing: sync state, newest resourceVersion, error count, the last
  error and its kind (an HTTP status, or 0 when the API was unreachable or the watch
  itself died; cleared once the watch works again), pod count, index size, and what it
  watches: the API URL, where its credentials came from (`"explicit"`, `"in_cluster"`
  or `"kubeconfig"`) and the namespaces (`:all` for every one).

  `restarts` counts how often the native watch died (a panic: a bug) and was restarted
  with backoff; `last_restart` says why, and stays after the watch has recovered. A
  restarted watch is not `synced` until it has listed every namespace again.
  """
  @spec health(t()) :: %{
          synced: boolean(),
          last_sync: non_neg_integer() | nil,
          resource_version: String.t() | nil,
          errors: non_neg_integer(),
          last_error: String.t() | nil,
          last_error_kind: non_neg_integer(),
          pods: non_neg_integer(),
          index_bytes: non_neg_integer(),
          api_url: String.t() | nil,
          credentials: String.t() | nil,
          namespaces: [String.t()] | :all,
          restarts: non_neg_integer(),
          last_restart: String.t() | nil
        }
  def health(%__MODULE__{resource: r}), do: KubeDist.Native.health(r)

  defp validate(options) do
    Enum.reduce_while(options, {:ok, %{}}, fn
      {key, value}, {:ok, acc}
      when key in @string_options and (is_binary(value) or is_nil(value)) ->
        {:cont, {:ok, Map.put(acc, key, value)}}

      {:namespaces, :all}, {:ok, acc} ->
        {:cont, {:ok, Map.put(acc, :namespaces, :all)}}

      {:namespaces, list}, {:ok, acc} when is_list(list) ->
        if not List.improper?(list) and Enum.all?(list, &is_binary/1),
          do: {:cont, {:ok, Map.put(acc, :namespaces, list)}},
          else: {:halt, {:error, "option :namespaces must be a list of strings or :all"}}

      # A token given in the wrong type is still a secret: never echo it.
      {:token, _}, _ ->
        {:halt, {:error, "option :token must be a string"}}

      {key, value}, _ when key in @string_options or key == :namespaces ->
        {:halt, {:error, "option #{inspect(key)} has an invalid value: #{inspect(value)}"}}

      {key, _}, _ ->
        {:halt, {:error, "unknown option #{inspect(key)}"}}
    end)
  end
end
