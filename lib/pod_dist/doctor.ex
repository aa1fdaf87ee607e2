defmodule PodDist.Doctor do
  @moduledoc """
  Explains an empty `Node.list()`: checks, from inside a node, everything clustering
  depends on and says how to fix what fails.

      $ kubectl exec -it deploy/shop -- bin/shop rpc "PodDist.doctor()"
      [ok]   distribution: shop@shop-7d9c-x2x4q, short names
      [ok]   epmd module: PodDist.Epmd, epmd mode
      [ok]   API server: https://10.96.0.1:443, in_cluster credentials, TLS verified
      [FAIL] RBAC in "prod": pods in namespace prod: 403 Forbidden ...
             fix: kubectl apply -f - <<EOF ... (the Role and RoleBinding to apply)
      ...

  The checks, in order: distribution (started, name mode); the epmd module and its
  mode (and, if it runs as the stock one since boot, why); the NIF (when it does not
  load, nothing else is checked: the file, and which build to run); the API server (reachable, credentials, TLS); RBAC (`get`, `list`, `watch` on
  pods) in each watched namespace; the pods seen, and which are eligible and why not;
  this node's own pod; then every candidate node: its name, how its host resolves,
  whether its epmd (or declared port) answers, and whether it is connected.

  The doctor observes, it does not act: it never connects a node (a connect would make
  a visible connection in a hidden-node topology, pull a leaving node back in, and let
  `global` connect the rest transitively), and it names pods as the strategy does, with
  the names the running strategy already knows and at most 16 per pod.

  It reads the configuration of the `PodDist.Strategy` running in this node, else the
  `POD_DIST_*` variables of `PodDist.Epmd`; `PodDist.doctor(config)` checks an
  explicit strategy config instead. `mix pod_dist.doctor` runs the same checks from a
  development machine through a kubeconfig.

  Three parts: `PodDist.Doctor.Gather` observes (the only one that does I/O),
  `PodDist.Doctor.Checks` judges what it observed (pure), and `format/1` prints.
  On a 403 the fix is the Role to apply, from `PodDist.Doctor.Role`: the watch's own
  error names only the verbs and the resource, and points here.
  """

  alias PodDist.Doctor.{Checks, Gather}
  alias PodDist.Strategy.Config

  @typedoc "One check's outcome; `fix` says what to do when it is not `:ok`."
  @type check :: %{
          name: String.t(),
          status: :ok | :warn | :fail,
          detail: String.t(),
          fix: String.t() | nil
        }

  @doc """
  Runs every check and returns them, printing nothing. `config` is a `PodDist.Strategy`
  config; without it, the running strategy's (or `PodDist.Epmd`'s) is used.
  """
  @spec run(keyword() | nil) :: [check()]
  def run(config \\ nil) do
    distribution = Gather.distribution()
    local = [Checks.distribution(distribution), Checks.epmd_module(Gather.epmd())]

    with :ok <- Gather.nif(),
         {:ok, config} <- Config.validate(config || Gather.config()),
         {:ok, cluster} <- Gather.cluster(config) do
      {candidates, skipped} = Checks.candidates(cluster.pods, config, cluster.own)
      probed = if distribution, do: Gather.probe(candidates, config)
      local ++ Checks.cluster(cluster, config) ++ Checks.nodes(probed, skipped)
    else
      {:nif_failed, problem} -> local ++ [Checks.nif(problem)]
      {:error, reason} -> local ++ [Checks.configuration(reason)]
    end
  end

  @doc "Formats checks as lines of text, one per check, with the fix under each failure."
  @spec format([check()]) :: String.t()
  def format(checks) do
    Enum.map_join(checks, "", fn %{name: name, status: status, detail: detail, fix: fix} ->
      tag = %{ok: "[ok]  ", warn: "[warn]", fail: "[FAIL]"}[status]
      fix = if fix && status != :ok, do: indent("fix: " <> fix), else: ""
      "#{tag} #{name}: #{detail}\n#{fix}"
    end)
  end

  defp indent(text),
    do: text |> String.split("\n", trim: true) |> Enum.map_join("", &"       #{&1}\n")
end
