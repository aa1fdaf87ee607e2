# libcluster cannot be fetched here; its strategy state struct is defined exactly as
# libcluster 3.5 does (topology, connect, disconnect, list_nodes, config, meta), so the
# contract tests build it the way Cluster.Supervisor does.
unless Code.ensure_loaded?(Cluster.Strategy.State) do
  defmodule Cluster.Strategy.State do
    @moduledoc false
    defstruct topology: nil, connect: nil, disconnect: nil, list_nodes: nil, meta: nil, config: []
  end
end

# libcluster's presence, as PodDist.Telemetry detects it (it then emits libcluster's
# connect and disconnect events too); none of its functions is called.
unless Code.ensure_loaded?(Cluster.Strategy) do
  defmodule Cluster.Strategy do
    @moduledoc false
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

defmodule PodDist.Test.FailingConnect do
  @moduledoc "A topology whose connect raises and which lists no node as connected."

  def connect(node), do: raise("cannot connect to #{node}")
  def list_nodes, do: []
end
