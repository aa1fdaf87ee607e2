defmodule PodDist.Application do
  @moduledoc false
  # One registry, so that `PodDist.doctor/0` finds the strategies running in this node.
  use Application

  @impl true
  def start(_type, _args) do
    children = [{Registry, keys: :duplicate, name: PodDist.Registry}]
    Supervisor.start_link(children, strategy: :one_for_one, name: PodDist.Supervisor)
  end
end
