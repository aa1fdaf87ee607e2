defmodule PodDist.StrategyTest do
  # The libcluster contract, with connect/disconnect recorded instead of performed.
  use PodDist.SimCase, async: true

  import ExUnit.CaptureLog

  alias PodDist.Simulator

  # As Cluster.Supervisor 3.5 builds it: {strategy, [state]} under a one_for_one supervisor.
  defp start_strategy(sim, config, connect \\ PodDist.Test.Recorder) do
    test = self()

    state = %Cluster.Strategy.State{
      topology: :k8s,
      connect: {connect, :connect, [test]},
      disconnect: {PodDist.Test.Recorder, :disconnect, [test]},
      list_nodes: {PodDist.Test.Recorder, :list_nodes, [test]},
      config: Keyword.merge(Simulator.watch_options(sim), config),
      meta: nil
    }

    start_supervised!(Supervisor.child_spec({PodDist.Strategy, [state]}, id: make_ref()))
  end

  test "connects ready pods' nodes, waits for readiness, disconnects deleted (terminating) pods",
       %{sim: sim} do
    create_pod(sim, "default", "api-0", ip: "198.51.100.1")
    create_pod(sim, "default", "api-1", ip: "198.51.100.2", ready: false)
    start_strategy(sim, node_basename: "app", reconcile_interval: 60_000)

    assert_receive {:connect, :"app@api-0"}, 5_000
    refute_receive {:connect, :"app@api-1"}, 300

    set_running(sim, "default", "api-1", "198.51.100.2", true)
    assert_receive {:connect, :"app@api-1"}, 5_000

    delete_pod(sim, "default", "api-0", 30)
    assert_receive {:disconnect, :"app@api-0"}, 5_000
  end

  test "heterogeneous basenames from a label; IP and dashed-IP host forms", %{sim: sim} do
    create_pod(sim, "default", "mixed", ip: "198.51.100.3", labels: [nodes: "api,worker"])
    start_strategy(sim, nodes: {:label, "nodes"}, host: :dashed_ip)
    assert_receive {:connect, :"api@198-51-100-3.default.pod.cluster.local"}, 5_000
    assert_receive {:connect, :"worker@198-51-100-3.default.pod.cluster.local"}, 5_000

    start_strategy(sim,
      nodes: {:label, "nodes"},
      host: :ip,
      namespaces: ["default"],
      label_selector: "nodes"
    )

    assert_receive {:connect, :"api@198.51.100.3"}, 5_000
  end

  test "nodes declared by ports, by annotation or by a function; hostname FQDNs", %{sim: sim} do
    create_pod(sim, "default", "declared",
      ip: "198.51.100.4",
      ports: [{"dist-api", 4371}, {"dist-worker", 4372}]
    )

    start_strategy(sim, nodes: :declared, label_selector: "!nodes")
    assert_receive {:connect, :api@declared}, 5_000
    assert_receive {:connect, :worker@declared}, 5_000

    create_pod(sim, "default", "web-0",
      ip: "198.51.100.5",
      hostname: "web-0",
      subdomain: "web",
      labels: [nodes: "x"]
    )

    {:ok, 200, _} =
      api(
        sim,
        :patch,
        "/api/v1/namespaces/default/pods/web-0",
        %{metadata: %{annotations: %{"pod-dist/nodes" => "edge"}}},
        "application/merge-patch+json"
      )

    start_strategy(sim,
      nodes: {:annotation, "pod-dist/nodes"},
      host: :hostname_fqdn,
      label_selector: "nodes=x"
    )

    assert_receive {:connect, :"edge@web-0.web.default.svc.cluster.local"}, 5_000

    start_strategy(sim, nodes: fn pod -> ["fn-#{pod.name}"] end, label_selector: "nodes=x")
    assert_receive {:connect, :"fn-web-0@web-0"}, 5_000
  end

  test "implausible node names never become atoms", %{sim: sim} do
    create_pod(sim, "default", "hostile", ip: "198.51.100.8")
    names = ["ok", "bad name", String.duplicate("x", 65)] ++ for(i <- 1..100, do: "n#{i}")
    start_strategy(sim, nodes: fn _pod -> names end)
    assert_receive {:connect, :ok@hostile}, 5_000
    Process.sleep(300)

    connects =
      Stream.repeatedly(fn ->
        receive do
          {:connect, n} -> n
        after
          0 -> nil
        end
      end)
      |> Enum.take_while(& &1)

    # 16 names per pod at most, none of the invalid ones.
    assert length(Enum.uniq([:ok@hostile | connects])) == 16
    refute Enum.any?(connects, &(Atom.to_string(&1) =~ " "))
  end

  test "one node that never answers does not hold up the others", %{sim: sim} do
    create_pod(sim, "default", "dead", ip: "198.51.100.6")
    create_pod(sim, "default", "alive", ip: "198.51.100.7")

    start_strategy(
      sim,
      [node_basename: "app", connect_timeout: 60_000],
      PodDist.Test.SlowRecorder
    )

    assert_receive {:trying, :app@dead}, 5_000
    # The hung connect waits for its 60 s timeout; the other one is not queued behind it.
    assert_receive {:connect, :app@alive}, 1_000
  end

  test "emits telemetry when :telemetry is loaded", %{sim: sim} do
    test = self()

    events = [
      [:pod_dist, :strategy, :connect, :start],
      [:pod_dist, :strategy, :connect, :stop],
      [:pod_dist, :strategy, :disconnect],
      [:pod_dist, :strategy, :discovery]
    ]

    forward = fn event, measurements, metadata, _ ->
      send(test, {:telemetry, event, measurements, metadata})
    end

    :ok = :telemetry.attach_many({__MODULE__, test}, events, forward, nil)
    on_exit(fn -> :telemetry.detach({__MODULE__, test}) end)
    create_pod(sim, "default", "api-0", ip: "198.51.100.1")
    start_strategy(sim, node_basename: "app")

    assert_receive {:telemetry, [:pod_dist, :strategy, :connect, :start],
                    %{monotonic_time: _, system_time: _},
                    %{node: :"app@api-0", topology: :k8s, telemetry_span_context: span}},
                   5_000

    assert_receive {:telemetry, [:pod_dist, :strategy, :connect, :stop],
                    %{duration: d, monotonic_time: _},
                    %{
                      node: :"app@api-0",
                      result: true,
                      topology: :k8s,
                      telemetry_span_context: ^span
                    }},
                   5_000

    assert is_integer(d)
    delete_pod(sim, "default", "api-0", 30)

    assert_receive {:telemetry, [:pod_dist, :strategy, :disconnect], %{duration: _},
                    %{node: :"app@api-0", result: true}},
                   5_000

    create_pod(sim, "default", "api-1", ip: "198.51.100.2")

    assert_receive {:telemetry, [:pod_dist, :strategy, :discovery], %{nodes: 1},
                    %{pod: "api-1", change: :joined, nodes: [:"app@api-1"]}},
                   5_000
  end

  test "a connect that times out ends its span with result :timeout, libcluster's with an error",
       %{sim: sim} do
    test = self()

    forward = fn event, measurements, metadata, _ ->
      send(test, {:telemetry, event, measurements, metadata})
    end

    events = [[:pod_dist, :strategy, :connect, :stop], [:libcluster, :connect_node, :error]]
    :ok = :telemetry.attach_many({__MODULE__, test}, events, forward, nil)
    on_exit(fn -> :telemetry.detach({__MODULE__, test}) end)
    create_pod(sim, "default", "dead", ip: "198.51.100.6")
    start_strategy(sim, [node_basename: "app", connect_timeout: 200], PodDist.Test.SlowRecorder)

    assert_receive {:telemetry, [:pod_dist, :strategy, :connect, :stop], _,
                    %{node: :app@dead, result: :timeout}},
                   5_000

    assert_receive {:telemetry, [:libcluster, :connect_node, :error], %{duration: _},
                    %{node: :app@dead, topology: :k8s, reason: :timeout}}
  end

  test "credentials not there yet: the strategy logs once, keeps running and starts later",
       %{sim: sim} do
    create_pod(sim, "default", "api-0", ip: "198.51.100.1")
    ca_file = Path.join(sim.dir, "late-ca.crt")

    log =
      capture_log(fn ->
        pid =
          start_strategy(sim, node_basename: "app", ca_file: ca_file, reconcile_interval: 60_000)

        # Two retries fail meanwhile (1 s, then 2 s): still one log line, still alive.
        Process.sleep(3_500)
        assert Process.alive?(pid)
        refute_received {:connect, _}
        File.cp!(Path.join(sim.dir, "ca.crt"), ca_file)
        assert_receive {:connect, :"app@api-0"}, 10_000
      end)

    assert [_] = Regex.scan(~r/cannot watch pods: .*late-ca\.crt/, log)
  end

  test "a naming that crashes is logged once, retried with backoff, and connects once it works",
       %{sim: sim} do
    create_pod(sim, "default", "api-0", ip: "198.51.100.1")
    create_pod(sim, "default", "long", ip: "198.51.100.2")
    calls = :counters.new(1, [])
    broken = :atomics.new(1, [])
    :atomics.put(broken, 1, 1)

    nodes = fn
      %{name: "long"} ->
        :counters.add(calls, 1, 1)
        # A user function that raises while broken.
        if :atomics.get(broken, 1) == 1, do: raise("no basename for this pod"), else: ["app"]

      _pod ->
        ["app"]
    end

    log =
      capture_log(fn ->
        pid = start_strategy(sim, nodes: nodes, reconcile_interval: 100)
        assert_receive {:connect, :"app@api-0"}, 5_000
        # Retried (1 s, then 2 s), not at each 100 ms snapshot; one log line.
        Process.sleep(3_500)
        assert :counters.get(calls, 1) in 2..4
        assert Process.alive?(pid)
        :atomics.put(broken, 1, 0)
        assert_receive {:connect, :app@long}, 10_000
      end)

    assert [_] = Regex.scan(~r/naming pod long failed: .*no basename for this pod/s, log)
  end

  test "a pod whose selected label is removed and put back is never disconnected", %{sim: sim} do
    create_pod(sim, "default", "api-0", ip: "198.51.100.1", labels: [app: "shop"])
    create_pod(sim, "default", "api-1", ip: "198.51.100.2", labels: [app: "shop"])

    start_strategy(sim,
      node_basename: "app",
      label_selector: "app=shop",
      own_pod: "api-0",
      reconcile_interval: 100
    )

    assert_receive {:connect, :"app@api-1"}, 5_000

    for pod <- ["api-1", "api-0"] do
      patch_pod(sim, "default", pod, %{metadata: %{labels: %{app: nil}}})
      Process.sleep(500)
      patch_pod(sim, "default", pod, %{metadata: %{labels: %{app: "shop"}}})
    end

    refute_receive {:disconnect, _}, 2_500
  end

  test "an API outage or a 403 disconnects nobody and says how to fix it", %{sim: sim} do
    create_pod(sim, "default", "api-0", ip: "198.51.100.1")
    start_strategy(sim, node_basename: "app", reconcile_interval: 200)
    assert_receive {:connect, :"app@api-0"}, 5_000

    log =
      capture_log(fn ->
        fault!(sim, "rbac", namespaces: "elsewhere")
        fault!(sim, "faults/cut-watches")
        # The node drops meanwhile (as the recorder sees it).
        :ets.delete(PodDist.Test.Recorder, {self(), :"app@api-0"})
        Process.sleep(1_500)
        fault!(sim, "faults/unavailable", seconds: 1)
        Process.sleep(1_500)
      end)

    refute_received {:disconnect, _}
    assert log =~ "403 Forbidden"
    assert log =~ "grant get, list and watch on pods"
    assert log =~ "keeping the cluster as it is"
    # The periodic reconcile keeps working from the index meanwhile: it connects again.
    assert_received {:connect, :"app@api-0"}
  end

  test "version isolation keeps two releases apart", %{sim: sim} do
    create_pod(sim, "default", "me", ip: "198.51.100.10", labels: [version: "2"])
    create_pod(sim, "default", "old", ip: "198.51.100.11", labels: [version: "1"])
    create_pod(sim, "default", "new", ip: "198.51.100.12", labels: [version: "2"])
    start_strategy(sim, node_basename: "app", version_label: "version", own_pod: "me")
    assert_receive {:connect, :app@new}, 5_000
    refute_receive {:connect, :app@old}, 300
  end

  test "the other nodes of our own pod are connected too", %{sim: sim} do
    # This test's VM stands for a third node of pod "me" (it is neither api@me nor worker@me).
    create_pod(sim, "default", "me", ip: "198.51.100.10", labels: [nodes: "api,worker"])
    start_strategy(sim, nodes: {:label, "nodes"}, own_pod: "me")
    assert_receive {:connect, :api@me}, 5_000
    assert_receive {:connect, :worker@me}, 5_000
  end

  test "a node whose own pod is terminating stops reaching out", %{sim: sim} do
    create_pod(sim, "default", "me", ip: "198.51.100.10")
    create_pod(sim, "default", "peer", ip: "198.51.100.11")
    start_strategy(sim, node_basename: "app", own_pod: "me", reconcile_interval: 100)
    assert_receive {:connect, :app@peer}, 5_000
    # Another node of our pod (a sibling) is connected too: it stays.
    :ets.insert(PodDist.Test.Recorder, {{self(), :worker@me}})

    {:ok, 200, _} = api(sim, :delete, "/api/v1/namespaces/default/pods/me")
    # It leaves through the topology's functions: the peer, listed by list_nodes, is
    # disconnected by disconnect.
    assert_receive {:disconnect, :app@peer}, 5_000
    Process.sleep(300)
    flush()
    # The peer drops (as the recorder sees it): a node still joining would connect it
    # again at its next reconcile, every 100 ms; a leaving one must not.
    :ets.delete(PodDist.Test.Recorder, {self(), :app@peer})
    refute_receive {:connect, _}, 500
    refute_received {:disconnect, :worker@me}
  end

  test "libcluster's contract: list_nodes decides who is connected, for connects and disconnects",
       %{sim: sim} do
    create_pod(sim, "default", "api-0", ip: "198.51.100.1")
    create_pod(sim, "default", "api-1", ip: "198.51.100.2")
    # The topology lists app@api-0 as connected already (a hidden node, say), though
    # this VM is connected to nobody: it is not connected again.
    :ets.insert(PodDist.Test.Recorder, {{self(), :"app@api-0"}})
    start_strategy(sim, node_basename: "app", reconcile_interval: 60_000)
    assert_receive {:connect, :"app@api-1"}, 5_000
    refute_receive {:connect, :"app@api-0"}, 300

    # app@api-1 drops (as the topology lists it), then its pod is deleted: nothing to
    # disconnect. api-0's pod is deleted next: its listed node is disconnected (after
    # the same grace).
    :ets.delete(PodDist.Test.Recorder, {self(), :"app@api-1"})
    delete_pod(sim, "default", "api-1", 30)
    delete_pod(sim, "default", "api-0", 30)
    assert_receive {:disconnect, :"app@api-0"}, 5_000
    refute_receive {:disconnect, :"app@api-1"}, 300
  end

  test "invalid config is refused at start with the key named", %{sim: sim} do
    Process.flag(:trap_exit, true)

    assert {:error, {:invalid_config, message}} =
             PodDist.Strategy.start_link(Keyword.merge(Simulator.watch_options(sim), host: :fqdn))

    assert message =~ "PodDist.Strategy config :host: must be :pod_name"
    assert {:error, {:invalid_config, message}} = PodDist.Strategy.start_link(bogus: 1)
    assert message =~ "PodDist.Strategy config: unknown option :bogus"
  end

  test "an improper or non-keyword config is a config error, not a crash" do
    alias PodDist.Strategy.Config

    for config <- [[{:host, :ip} | :x], [:host], [{"host", :ip}], %{host: :ip}] do
      assert {:error, "PodDist.Strategy config must be a keyword list" <> _} =
               Config.validate(config)
    end

    assert {:error, "PodDist.Strategy config: option :namespaces must be a list of strings" <> _} =
             Config.validate(namespaces: ["a" | "b"])

    # Watch keys are validated by the watch's own validator, strategy keys here.
    assert {:error, "PodDist.Strategy config: option :token must be a string"} =
             Config.validate(token: 42)

    assert {:ok, config} = Config.validate(namespaces: :all, host: :ip, nodes: :epmd)
    assert Config.watch_options(config) == [namespaces: :all]
  end

  defp flush do
    receive do
      {:connect, _} -> flush()
    after
      0 -> :ok
    end
  end
end
