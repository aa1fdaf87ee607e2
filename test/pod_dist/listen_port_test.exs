defmodule PodDist.Epmd.ListenPortTest do
  use ExUnit.Case, async: true

  alias PodDist.Epmd.ListenPort

  test "the port the pod declares for the node is the one to listen on, exactly" do
    assert ListenPort.choose(nil, {:pod, {4371, :own}}, 4370) == {:exact, 4371}
  end

  test "a shared port is taken if free (a second node of the pod needs no inbound port)" do
    assert ListenPort.choose(nil, {:pod, {4380, :shared}}, 4370) == {:if_free, 4380}
  end

  test "no declared port, no pod or no index: the default port, as peers dial it" do
    for own <- [{:pod, nil}, :no_pod, :no_watch],
        do: assert(ListenPort.choose(nil, own, 4370) == {:if_free, 4370})
  end

  test "POD_DIST_LISTEN_PORT wins, even before the list is in" do
    assert ListenPort.choose(4390, :unknown, 4370) == {:if_free, 4390}
    assert ListenPort.choose(4390, {:pod, {4371, :own}}, 4370) == {:if_free, 4390}
  end

  test "not knowing the pod yet means not knowing the port: refuse" do
    assert ListenPort.choose(nil, :unknown, 4370) == :unknown
  end
end
