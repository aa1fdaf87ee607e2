defmodule Mix.Tasks.PodDist.Doctor do
  @shortdoc "Checks PodDist's access to a Kubernetes cluster and explains failures"
  @moduledoc """
  Runs `PodDist.doctor/1` from this machine: API server, credentials, TLS, RBAC per
  namespace and the pods seen, each with the fix for what fails. Node checks need a
  distributed node inside the cluster: run `PodDist.doctor()` there for those.

      mix pod_dist.doctor --namespace prod --label-selector app=shop
      mix pod_dist.doctor --kubeconfig ~/.kube/staging --basename app

  Options: `--namespace` (repeatable; `*` for all), `--label-selector`,
  `--field-selector`, `--api-url`, `--ca-file`, `--token-file`, `--kubeconfig`,
  `--basename` (one fixed node basename), `--eligible ready|running`. The exit status is
  1 when a check fails.
  """
  use Mix.Task

  @switches [
    namespace: :keep,
    label_selector: :string,
    field_selector: :string,
    api_url: :string,
    ca_file: :string,
    token_file: :string,
    kubeconfig: :string,
    basename: :string,
    eligible: :string
  ]

  @impl true
  def run(args) do
    Mix.Task.run("compile")

    case OptionParser.parse(args, strict: @switches) do
      {opts, [], []} ->
        if PodDist.doctor(config(opts)) != :ok, do: exit({:shutdown, 1})

      {_, _, invalid} ->
        Mix.raise(
          "mix pod_dist.doctor: bad arguments #{inspect(invalid)}; see `mix help pod_dist.doctor`"
        )
    end
  end

  defp config(opts) do
    namespaces =
      case Keyword.get_values(opts, :namespace) do
        [] -> nil
        ["*"] -> :all
        list -> list
      end

    eligible = if opts[:eligible] == "running", do: :running, else: :ready

    [
      namespaces: namespaces,
      node_basename: opts[:basename],
      eligible: eligible
    ] ++
      Keyword.take(opts, [
        :label_selector,
        :field_selector,
        :api_url,
        :ca_file,
        :token_file,
        :kubeconfig
      ])
  end
end
