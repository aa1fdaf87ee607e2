defmodule KubeDist.ReleaseNetnsTest do
  # examples/shop, built with `mix release` as a user builds it: two copies boot as pods
  # with KubeDist.Epmd from the release's vm.args and form a cluster on their own.
  use ExUnit.Case, async: false

  import KubeDist.SimCase, only: [eventually: 1]

  alias KubeDist.Test.{Cluster, Node}

  @moduletag :netns
  @moduletag timeout: 300_000
  @example "examples/shop"

  setup_all do
    {out, status} =
      System.cmd("mix", ["release", "--overwrite"],
        cd: @example,
        env: [{"MIX_ENV", "prod"}],
        stderr_to_stdout: true
      )

    assert status == 0, out
    :ok
  end

  test "two copies of the example release join each other as pods" do
    cluster = Cluster.start!(mode: :epmdless)
    bin = Path.expand("#{@example}/_build/prod/rel/shop/bin/shop")

    for pod <- ["pod-a", "pod-b"] do
      Cluster.add_pod!(cluster, pod, ports: [{"dist-shop", 4370}], labels: [app: "shop"])

      Cluster.spawn_in_pod!(cluster, pod, [bin, "start"], [
        {"RELEASE_NODE", "shop@#{pod}"},
        {"RELEASE_COOKIE", "kube_dist_test"},
        {"KUBE_DIST_MODE", "epmdless"},
        {"KUBE_DIST_NAMESPACES", "default"},
        {"KUBE_DIST_LABEL_SELECTOR", "app=shop"},
        {"KUBE_DIST_API_URL", "https://198.51.100.254:6443"},
        {"KUBE_DIST_CA_FILE", Path.join(cluster.sim.dir, "ca.crt")},
        {"KUBE_DIST_TOKEN_FILE", Path.join(cluster.sim.dir, "serviceaccount/token")}
      ])
    end

    # A hidden observer: its connections are not passed on, so what the releases are
    # connected to, they connected to themselves.
    Cluster.add_pod!(cluster, "pod-c", ports: [{"dist", 4370}])
    observer = Cluster.start_node!(cluster, "observer", "pod-c", extra_args: ["-hidden"])

    call = fn node, mfa -> Node.eval(observer, ":erpc.call(:#{inspect(node)}, #{mfa})") end

    eventually(fn -> match?({:ok, true}, Node.eval(observer, "Node.connect(:\"shop@pod-a\")")) end)

    assert {:ok, {:ok, [[~c"Elixir.KubeDist.Epmd"]]}} =
             call.("shop@pod-a", ":init, :get_argument, [:epmd_module]")

    assert {:ok, :epmdless} = call.("shop@pod-a", "KubeDist.Epmd, :mode, []")
    eventually(fn -> call.("shop@pod-a", "Node, :list, []") == {:ok, [:"shop@pod-b"]} end)
    assert {:ok, [:"shop@pod-a"]} = call.("shop@pod-b", "Node, :list, []")
  end
end
