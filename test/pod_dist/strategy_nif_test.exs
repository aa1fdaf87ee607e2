defmodule PodDist.StrategyNifTest do
  # A node whose NIF cannot load: under libcluster the strategy must not take the
  # application down; it says why once and tries again, as for any watch-start failure.
  use PodDist.SimCase, async: true

  alias PodDist.Test.Node

  test "a node whose NIF cannot load: the strategy starts, says why once, and keeps retrying",
       %{sim: sim} do
    epmd_port = 14_371

    start_epmd!(epmd_port)
    lib = lib_without_nif!()

    node =
      Node.start!(sim, "nonif", "localhost",
        pod_dist_ebin: Path.join(lib, "ebin"),
        ip: "127.0.0.1",
        mode: :epmd,
        epmd_port: epmd_port
      )

    on_exit(fn -> Node.stop(node) end)

    # As Cluster.Supervisor starts it: a supervisor whose child must not fail to start.
    start = """
    {:ok, _} = Application.ensure_all_started(:logger)
    state = %{topology: :k8s, connect: {:net_kernel, :connect_node, []},
      disconnect: {:erlang, :disconnect_node, []}, list_nodes: {:erlang, :nodes, [:connected]},
      config: #{inspect(PodDist.Simulator.watch_options(sim) ++ [node_basename: "app"])}, meta: nil}
    {:ok, sup} = Supervisor.start_link([{PodDist.Strategy, [state]}], strategy: :one_for_one)
    Process.unlink(sup)
    [{_, pid, _, _}] = Supervisor.which_children(sup)
    Process.register(pid, :pod_dist_strategy)
    :ok
    """

    assert {:ok, :ok} = Node.eval(node, start)
    {:ok, pid} = Node.eval(node, "Process.whereis(:pod_dist_strategy)")
    # Two retries later (1 s, 2 s): the same process, one log line, what it knows.
    Process.sleep(3_500)
    assert {:ok, ^pid} = Node.eval(node, "Process.whereis(:pod_dist_strategy)")

    assert {:ok, %{life: :waiting, own_pod: nil}} =
             Node.eval(node, "PodDist.Strategy.info(:pod_dist_strategy)")

    output = Node.output(node)
    assert length(String.split(output, "PodDist.Strategy: cannot load its NIF")) == 2, output
    assert output =~ "pod_dist_nif.so is missing: run `mix compile`"
  end
end
