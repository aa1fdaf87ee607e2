defmodule PodDist.Epmd.Fallback do
  @moduledoc false
  # What PodDist.Epmd says when it cannot do its job: the problem, what the node does
  # instead, and the fix. Pure text builders: PodDist.Epmd prints them once on the VM's
  # console (nothing else is safe while the kernel boots) and PodDist.Doctor reports them.

  @typedoc "A problem found at boot: what is wrong and how to fix it."
  @type problem :: %{detail: String.t(), fix: String.t()}

  @doc "The NIF at `path` (without `.so`) did not load, with the loader's `text`."
  @spec nif(charlist() | String.t(), charlist() | String.t(), boolean()) :: problem()
  def nif(path, text, file_exists?) do
    file = "#{path}.so"

    fix =
      if file_exists?,
        do:
          "#{file} exists but does not load: it was built for another libc or CPU " <>
            "architecture (e.g. built on glibc, run on Alpine/musl, or on another arch). " <>
            "Build it (mix compile, or mix release) in an image with the libc and " <>
            "architecture of the one it runs in",
        else:
          "#{file} is missing: run `mix compile` (it builds the NIF with cargo into priv/), " <>
            "then rebuild the release so it ships priv/pod_dist_nif.so"

    %{detail: "cannot load its NIF #{file}: #{text}", fix: fix}
  end

  @doc "The pod watch could not start."
  @spec watch(term()) :: problem()
  def watch(reason) do
    %{
      detail: "cannot watch pods: #{describe(reason)}",
      fix:
        "check how the API is reached: the service account mount (POD_DIST_SERVICE_ACCOUNT_DIR), " <>
          "or POD_DIST_API_URL with POD_DIST_CA_FILE and POD_DIST_TOKEN_FILE, or POD_DIST_KUBECONFIG; " <>
          "PodDist.doctor() checks the rest"
    }
  end

  @doc "What a node whose epmd module has `problem` does instead, in `mode`."
  @spec instead(:epmd | :epmdless, :inet.port_number(), :inet.port_number() | nil) :: String.t()
  def instead(:epmd, _default_port, _listen_port),
    do: "distribution works as with the stock erl_epmd; pod names resolve only through DNS"

  def instead(:epmdless, default_port, listen_port),
    do:
      "hosts resolve through the stock resolver (DNS, /etc/hosts) on port #{default_port}; " <>
        "this node listens on port #{listen_port || default_port}"

  @doc "The console text for `problem`: one block, every line marked as PodDist.Epmd's."
  @spec console(problem(), String.t()) :: charlist()
  def console(%{detail: detail, fix: fix}, instead) do
    String.to_charlist(
      "PodDist.Epmd: #{detail}\n" <>
        "PodDist.Epmd: meanwhile #{instead}\n" <>
        "PodDist.Epmd: fix: #{fix}\n"
    )
  end

  @doc "Why the listen port of `node` is unknown, as a problem."
  @spec unknown_port(String.t(), non_neg_integer(), String.t() | nil) :: problem()
  def unknown_port(node, waited_ms, api_error) do
    api = if api_error, do: " (last API error: #{api_error})", else: ""

    %{
      detail:
        "refusing to start distribution for #{node}: its listen port is unknown. Its pod was " <>
          "not listed within #{waited_ms} ms of boot#{api}, and peers dial the port the pod " <>
          "declares (dist-<basename>): listening on any other would leave it unreachable",
      fix:
        "set POD_DIST_LISTEN_PORT in the container to its dist-<basename> containerPort " <>
          "(then no API is needed at boot), or fix the API access (PodDist.doctor())"
    }
  end

  defp describe(reason) when is_binary(reason), do: reason
  defp describe(reason), do: inspect(reason)
end
