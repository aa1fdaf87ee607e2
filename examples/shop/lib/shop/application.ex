defmodule Shop.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    # With libcluster: config :libcluster, topologies: [k8s: [strategy: PodDist.Strategy, config: ...]]
    children = [{PodDist.Strategy, Application.fetch_env!(:shop, :cluster)}]
    Supervisor.start_link(children, strategy: :one_for_one, name: Shop.Supervisor)
  end
end
