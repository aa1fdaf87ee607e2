# libcluster cannot be fetched here; its strategy state struct is defined exactly as
# libcluster 3.5 does (topology, connect, disconnect, list_nodes, config, meta), so the
# contract tests build it the way Cluster.Supervisor does.
unless Code.ensure_loaded?(Cluster.Strategy.State) do
  defmodule Cluster.Strategy.State do
    @moduledoc false
    defstruct topology: nil, connect: nil, disconnect: nil, list_nodes: nil, meta: nil, config: []
  end
end

defmodule PodDist.Test.Recorder do
  @moduledoc """
  Connect/disconnect/list_nodes MFAs that report to a test process instead of acting,
  and remember who is "connected" (in a public table the test helper creates).
  """

  def connect(test, node) do
    :ets.insert(__MODULE__, {{test, node}})
    send(test, {:connect, node}) && true
  end

  def disconnect(test, node) do
    :ets.delete(__MODULE__, {test, node})
    send(test, {:disconnect, node}) && true
  end

  def list_nodes(test), do: :ets.select(__MODULE__, [{{{test, :"$1"}}, [], [:"$1"]}])
end

defmodule PodDist.Test.SlowRecorder do
  @moduledoc "A connect MFA for which one node never answers, as a dead IP would."

  def connect(test, :app@dead = node), do: send(test, {:trying, node}) && Process.sleep(:infinity)
  def connect(test, node), do: send(test, {:connect, node}) && true
end

unless Code.ensure_loaded?(:telemetry) do
  defmodule :telemetry do
    @moduledoc false
    # Stands in for the optional :telemetry dependency: forwards events to a registered test.
    def execute(event, measurements, metadata) do
      if pid = Process.whereis(:pod_dist_telemetry_test),
        do: send(pid, {:telemetry, event, measurements, metadata})

      :ok
    end
  end
end
