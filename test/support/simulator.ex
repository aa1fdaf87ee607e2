defmodule PodDist.Simulator do
  @moduledoc """
  Runs `kube_sim`, PodDist's Kubernetes API simulator, as a child OS process: for the
  demo, the test suite and the benchmarks (test tooling: compiled in `MIX_ENV=test` only).

  The simulator serves the core/v1 Pod API over HTTPS with a generated CA and bearer
  tokens, exactly as kube-apiserver does, plus a loopback-only control port that acts
  as cluster admin and injects faults.

      {:ok, sim} = PodDist.Simulator.start(pods: 3)
      {:ok, watch} = PodDist.Watch.start(PodDist.Simulator.watch_options(sim))
      PodDist.Simulator.request(sim, :delete, "/api/v1/namespaces/default/pods/pod-1")
      PodDist.Simulator.fault(sim, "faults/compact")
      PodDist.Simulator.stop(sim)

  The binary is built with cargo on first use (`cargo build --release -p kube_sim` in the
  root, development workspace).
  The simulator exits when the process that started it exits.
  """

  @enforce_keys [:port, :url, :control, :dir]
  defstruct [:port, :url, :control, :dir]

  @typedoc "A running simulator."
  @type t :: %__MODULE__{port: port(), url: String.t(), control: String.t(), dir: String.t()}

  @doc """
  Starts a simulator.

  Options: `:pods` (seed this many ready pods named `pod-N` with loopback IPs),
  `:namespace` (for seeded pods and the service account, default `"default"`),
  `:san` (extra names or IPs for its certificate), `:history` (changes kept before
  watches get 410), `:bookmark_ms`, `:listen` (`"ip:port"`), `:netns` (a network
  namespace to serve the API in; the control port stays on this host's loopback),
  `:dir` (where it writes
  `ca.crt`, `token`, `kubeconfig`, `serviceaccount/`; default a fresh temporary dir).
  """
  @spec start(keyword()) :: {:ok, t()} | {:error, term()}
  def start(opts \\ []) do
    dir = Keyword.get_lazy(opts, :dir, &tmp_dir/0)
    File.mkdir_p!(dir)

    args =
      ["serve", "--dir", dir] ++
        flag(opts, :pods, "--pods") ++
        flag(opts, :namespace, "--namespace") ++
        flag(opts, :history, "--history") ++
        flag(opts, :bookmark_ms, "--bookmark-ms") ++
        flag(opts, :listen, "--listen") ++
        flag(opts, :netns, "--netns") ++
        Enum.flat_map(List.wrap(opts[:san]), &["--san", &1])

    port =
      Port.open({:spawn_executable, binary()}, [
        :binary,
        :exit_status,
        {:line, 65_536},
        args: args
      ])

    receive do
      {^port, {:data, {:eol, line}}} ->
        [url] = Regex.run(~r/"url":"([^"]+)"/, line, capture: :all_but_first)
        [control] = Regex.run(~r/"control":"([^"]+)"/, line, capture: :all_but_first)
        {:ok, %__MODULE__{port: port, url: url, control: control, dir: dir}}

      {^port, {:exit_status, status}} ->
        {:error, {:kube_sim_exited, status}}
    after
      30_000 -> {:error, :kube_sim_timeout}
    end
  end

  @doc "Stops the simulator (closing its standard input ends it)."
  @spec stop(t()) :: :ok
  def stop(%__MODULE__{port: port}) do
    if Port.info(port), do: Port.close(port)
    :ok
  catch
    :error, :badarg -> :ok
  end

  @doc "Options for `PodDist.Watch.start/1` that reach this simulator as its service account."
  @spec watch_options(t()) :: keyword()
  def watch_options(%__MODULE__{url: url, dir: dir}) do
    [
      api_url: url,
      ca_file: Path.join(dir, "ca.crt"),
      token_file: Path.join(dir, "serviceaccount/token")
    ]
  end

  @doc """
  Sends an admin request to the Pod API through the control port (no TLS, no token,
  never subject to injected faults). Returns `{:ok, status, body}`.
  """
  @spec request(
          t(),
          :get | :post | :put | :patch | :delete,
          String.t(),
          iodata() | nil,
          String.t()
        ) ::
          {:ok, non_neg_integer(), binary()} | {:error, term()}
  def request(
        %__MODULE__{control: control},
        method,
        path,
        body \\ nil,
        content_type \\ "application/json"
      ) do
    url = String.to_charlist(control <> path)

    request =
      if body,
        do: {url, [], String.to_charlist(content_type), IO.iodata_to_binary(body)},
        else: {url, []}

    {:ok, _} = Application.ensure_all_started(:inets)

    case :httpc.request(method, request, [timeout: 30_000], body_format: :binary) do
      {:ok, {{_, status, _}, _headers, body}} -> {:ok, status, body}
      {:error, reason} -> {:error, reason}
    end
  end

  @doc """
  Calls a control route, e.g. `fault(sim, "faults/unavailable", seconds: 5)`. Routes:
  `faults/unavailable`, `faults/offline`, `faults/recover`, `faults/compact`,
  `faults/cut-watches` (`expired: true`), `faults/malformed`, `faults/latency` (`ms:`),
  `faults/rotate-token`, `rbac` (`namespaces: "a,b"` or `"*"`; `resources:` what the
  service account may read, e.g. `"endpointslices.discovery.k8s.io,services"`, pods
  alone by default, unchanged when not given), `stats/reset`, and
  `churn` (`rate:` changes/s, `seconds:`, `namespace:`; each change flips a pod's
  readiness and stamps the annotation `kube-sim.dev/changed-at-ns`).
  """
  @spec fault(t(), String.t(), keyword()) :: {:ok, non_neg_integer(), binary()} | {:error, term()}
  def fault(sim, route, params \\ []) do
    request(sim, :post, "/_sim/#{route}?" <> URI.encode_query(params), "")
  end

  @doc """
  Checks manifests offline with `kube_sim manifest` (every field against its kind's
  schema); returns `{output, exit_status}`, on success a JSON report whose `"pods"` are
  the pods the manifests' Deployments would create.
  """
  def check_manifest(yaml) do
    path = Path.join(System.tmp_dir!(), "manifest-#{System.unique_integer([:positive])}.yaml")
    File.write!(path, yaml)

    try do
      System.cmd(binary(), ["manifest", path], stderr_to_stdout: true)
    after
      File.rm(path)
    end
  end

  @doc """
  The path of the `kube_sim` binary, built with cargo (if missing or stale) on the first
  call of a test run; concurrent first calls build it once.
  """
  @spec binary() :: String.t()
  def binary do
    case :persistent_term.get(__MODULE__, nil) do
      nil -> :global.trans({__MODULE__, self()}, &built_binary/0, [node()])
      path -> path
    end
  end

  defp built_binary do
    with nil <- :persistent_term.get(__MODULE__, nil) do
      path = build()
      :persistent_term.put(__MODULE__, path)
      path
    end
  end

  defp build do
    root = Path.expand("../..", __DIR__)
    # The checkout's target dir (.cargo/config.toml), which the NIF's build shares.
    target = System.get_env("CARGO_TARGET_DIR", Path.join(root, "target"))
    args = ["build", "--release", "--locked", "-p", "kube_sim", "--bin", "kube_sim", "--quiet"]

    case System.cmd("cargo", args, cd: root, stderr_to_stdout: true) do
      {_, 0} -> Path.join([target, "release", "kube_sim"])
      {output, status} -> raise "building kube_sim failed (#{status}):\n#{output}"
    end
  end

  defp flag(opts, key, name) do
    case Keyword.fetch(opts, key) do
      {:ok, value} -> [name, to_string(value)]
      :error -> []
    end
  end

  defp tmp_dir do
    Path.join(System.tmp_dir!(), "kube_sim-#{System.unique_integer([:positive])}")
  end
end
