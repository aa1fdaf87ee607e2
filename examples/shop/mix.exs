defmodule Shop.MixProject do
  use Mix.Project

  # An example release that clusters on Kubernetes with PodDist: see README.md.
  def project do
    [
      app: :shop,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: [{:pod_dist, path: "../.."}],
      releases: [shop: [include_executables_for: [:unix]]]
    ]
  end

  def application do
    [extra_applications: [:logger], mod: {Shop.Application, []}]
  end
end
