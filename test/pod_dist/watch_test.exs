defmodule PodDist.WatchTest do
  use PodDist.SimCase, async: true

  alias PodDist.{Simulator, Watch}

  @moduletag sim_options: [pods: 3]

  test "lists the simulator's pods through the NIF", %{sim: sim} do
    {:ok, watch} = Watch.start(Simulator.watch_options(sim))
    assert Watch.await_synced(watch, 10_000)

    pods = Watch.pods(watch)
    assert [%PodDist.Pod{}, %PodDist.Pod{}, %PodDist.Pod{}] = pods
    assert Enum.map(pods, & &1.name) == ["pod-0", "pod-1", "pod-2"]
    assert Enum.map(pods, & &1.ip) == [{127, 1, 0, 1}, {127, 1, 0, 2}, {127, 1, 0, 3}]
    assert Enum.all?(pods, &(&1.ready and &1.phase == :running and &1.namespace == "default"))
    assert %{"app" => "seeded"} = hd(pods).labels

    server_uids =
      sim |> server_pods("default") |> Enum.map(& &1["metadata"]["uid"]) |> Enum.sort()

    assert Enum.sort(Enum.map(pods, & &1.uid)) == server_uids
    # The native record and the Elixir struct have the same fields.
    assert Enum.sort(Map.keys(hd(pods))) ==
             Enum.sort(Map.keys(%PodDist.Pod{uid: "", namespace: "", name: ""}))

    health = Watch.health(watch)
    assert %{synced: true, pods: 3, errors: 0, source: :pods, error: nil} = health

    assert Enum.sort(Map.keys(health)) ==
             Enum.sort(~w(synced last_sync resource_version errors last_error error
                          service_account cluster_domain pods index_bytes api_url
                          credentials namespaces source restarts last_restart)a)
  end

  test "the lookup NIFs take hosts as the distribution hands them over", %{sim: sim} do
    {:ok, %Watch{resource: r} = watch} = Watch.start(Simulator.watch_options(sim))
    assert Watch.await_synced(watch, 10_000)

    for host <- ["pod-1", ~c"pod-1", :"pod-1"] do
      assert {:ok, {127, 1, 0, 2}} = PodDist.Native.address(r, host, :inet)

      assert {:ok, {127, 1, 0, 2}, %PodDist.Pod{name: "pod-1"}} =
               PodDist.Native.lookup(r, host, :inet)
    end

    # Seeded pods declare no ports: no epmd-less port of their own.
    assert {:ok, {127, 1, 0, 2}, nil} = PodDist.Native.node_address(r, ~c"pod-1", "app", :inet)
    assert {:ok, {127, 1, 0, 2}, nil} = PodDist.Native.node_address(r, "pod-1", :app, :inet)
    assert {:ok, {127, 1, 0, 2}, nil} = PodDist.Native.node_address(r, "pod-1", 42, :inet)

    assert_raise ArgumentError, "family must be :inet or :inet6", fn ->
      PodDist.Native.address(r, "pod-1", :inet4)
    end

    for garbage <- [[1, :x], [0x110000], <<0xFF>>, 42, {1, 2}, [?p | ?q]] do
      assert :error = PodDist.Native.address(r, garbage, :inet)
      assert :error = PodDist.Native.lookup(r, garbage, :inet)
      assert :error = PodDist.Native.node_address(r, garbage, "app", :inet)
    end
  end

  test "pods carry their node-name hosts and declared ports, built natively", %{sim: sim} do
    create_pod(sim, "default", "web-0",
      ip: "198.51.100.46",
      ports: [{"dist", 4370}, {"dist-api", 4371}, {"dist-", 4372}, {"http", 80}],
      hostname: "web-0",
      subdomain: "db"
    )

    create_pod(sim, "default", "lone-0", ip: "198.51.100.47", hostname: "lone-0")

    options = Keyword.put(Simulator.watch_options(sim), :cluster_domain, "k8s.example")
    {:ok, watch} = Watch.start(options)
    assert Watch.await_synced(watch, 10_000)
    pods = Map.new(Watch.pods(watch), &{&1.name, &1})

    assert pods["web-0"].hosts == %{
             pod_name: "web-0",
             ip: "198.51.100.46",
             dashed_ip: "198-51-100-46.default.pod.k8s.example",
             hostname_fqdn: "web-0.db.default.svc.k8s.example"
           }

    assert pods["web-0"].dist_ports == [{:any, 4370}, {"api", 4371}]
    assert PodDist.Epmd.declared_nodes(pods["web-0"]) == [{~c"*", 4370}, {~c"api", 4371}]
    # No subdomain: cluster DNS has no hostname record, so no such name.
    assert pods["lone-0"].hosts.hostname_fqdn == nil
    assert %{cluster_domain: "k8s.example"} = Watch.health(watch)

    for {_form, host} <- pods["web-0"].hosts,
        do: assert({:ok, {198, 51, 100, 46}, %{name: "web-0"}} = Watch.lookup(watch, host))

    assert {:ok, _, {4371, :own}} = Watch.node_address(watch, "web-0", "api")
    assert {:ok, _, {4370, :shared}} = Watch.node_address(watch, "web-0", "other")
  end

  test "subscribers hear additions, readiness, termination and deletion", %{sim: sim} do
    {:ok, watch} = Watch.start(Simulator.watch_options(sim))
    assert Watch.await_synced(watch, 10_000)
    tag = Watch.subscribe(watch)

    create_pod(sim, "default", "web-1")
    assert {:added, %PodDist.Pod{name: "web-1", ip: nil, phase: :pending}} = next_event(tag)

    set_running(sim, "default", "web-1", "127.0.5.1")
    assert {:changed, %{ready: false}, %{ready: true, ip: {127, 0, 5, 1}}} = next_event(tag)

    {:ok, 200, _} =
      api(sim, :delete, "/api/v1/namespaces/default/pods/web-1?gracePeriodSeconds=1")

    assert {:changed, %{terminating: false}, %{terminating: true}} = next_event(tag)
    assert {:deleted, %{name: "web-1"}} = next_event(tag)
  end

  test "a subscription keeps its watch alive until the subscriber exits", %{sim: sim} do
    parent = self()

    subscriber =
      spawn(fn ->
        receive_loop = fn loop ->
          receive do
            :stop -> :ok
            {:pod_dist, _, event} -> send(parent, {:forwarded, event}) && loop.(loop)
          end
        end

        receive_loop.(receive_loop)
      end)

    # The handle lives only in a short-lived task: afterwards only the subscription holds the watch.
    Task.async(fn ->
      {:ok, watch} = Watch.start(Simulator.watch_options(sim))
      true = Watch.await_synced(watch, 10_000)
      Watch.subscribe(watch, subscriber)
    end)
    |> Task.await()

    :erlang.garbage_collect()
    create_pod(sim, "default", "seen-by-subscriber")
    assert_receive {:forwarded, {:added, %{name: "seen-by-subscriber"}}}, 5_000
    assert sim_stats(sim)["open_watches"] == 1

    send(subscriber, :stop)
    eventually(fn -> sim_stats(sim)["open_watches"] == 0 end)
  end

  test "a subscriber that is not alive subscribes nothing and keeps nothing alive", %{sim: sim} do
    dead = spawn(fn -> :ok end)
    monitor = Process.monitor(dead)
    assert_receive {:DOWN, ^monitor, :process, ^dead, _}

    Task.async(fn ->
      {:ok, watch} = Watch.start(Simulator.watch_options(sim))
      true = Watch.await_synced(watch, 10_000)
      assert is_reference(Watch.subscribe(watch, dead))
    end)
    |> Task.await()

    :erlang.garbage_collect()
    eventually(fn -> sim_stats(sim)["open_watches"] == 0 end)
  end

  test "without the compiled NIF, calls fail with an error that says what to do" do
    app = Path.join(System.tmp_dir!(), "kd-no-nif-#{System.unique_integer([:positive])}/pod_dist")

    File.mkdir_p!(app)
    on_exit(fn -> File.rm_rf!(Path.dirname(app)) end)
    File.cp_r!(Path.join(:code.lib_dir(:pod_dist), "ebin"), Path.join(app, "ebin"))

    code = ~S"""
    try do
      PodDist.Native.start_watch([])
    rescue
      e -> IO.puts(Exception.message(e))
    end
    """

    {output, 0} =
      System.cmd("elixir", ["-pa", Path.join(app, "ebin"), "-e", code], stderr_to_stdout: true)

    assert output =~ "pod_dist_nif_not_loaded"
    assert output =~ "run `mix compile`"
  end

  test "a panic inside a NIF raises ErlangError :nif_panicked, and the VM and the NIF live on" do
    for _ <- 1..2 do
      error = assert_raise ErlangError, fn -> PodDist.Native.panic_for_test() end
      assert error.original == :nif_panicked
    end

    assert :ok = Watch.check_options(namespaces: :all)
  end

  test "unknown options and bad values raise ArgumentError naming the key; check_options tells" do
    assert_raise ArgumentError, "unknown option :namespace", fn -> Watch.start(namespace: "x") end

    assert_raise ArgumentError, "option :namespaces must be a list of strings or :all", fn ->
      Watch.start(namespaces: [:x])
    end

    # Improper lists, in a value or as the options themselves: a reason, not a panic.
    assert_raise ArgumentError, "option :namespaces must be a list of strings or :all", fn ->
      Watch.start(namespaces: ["a" | "b"])
    end

    assert_raise ArgumentError, "options must be a keyword list", fn ->
      Watch.start([{:namespaces, :all} | :x])
    end

    assert_raise ArgumentError, "options must be a keyword list", fn ->
      Watch.start(%{namespaces: :all})
    end

    assert {:error, "unknown option :namespace"} = Watch.check_options(namespace: "x")
    assert {:error, "options must be a keyword list"} = Watch.check_options([{:a, 1} | :x])
    assert {:error, "options must be a keyword list"} = Watch.check_options([:namespaces])
    assert {:error, "option :token must be a string"} = Watch.check_options(token: ~c"secret")

    assert {:error, "option :label_selector must be a string, got 1"} =
             Watch.check_options(label_selector: 1)

    assert :ok = Watch.check_options(namespaces: :all, token: nil, cluster_domain: "x")

    assert {:error, message} = Watch.start(api_url: "not a url", token: "t")
    assert message =~ "invalid api_url"
  end

  test "a namespace named twice is watched once, and syncs", %{sim: sim} do
    options = Simulator.watch_options(sim) ++ [namespaces: ["default", "default"]]
    {:ok, watch} = Watch.start(options)
    assert Watch.await_synced(watch, 10_000)
    assert %{namespaces: ["default"], pods: 3} = Watch.health(watch)
  end

  test "two tokens for one API server are two watches, each with its own rights", %{sim: sim} do
    # The service account may read nothing in "default"; the admin may.
    fault!(sim, "rbac", namespaces: "elsewhere")
    base = Keyword.put(Simulator.watch_options(sim), :token_file, nil)
    service_account = File.read!(Path.join(sim.dir, "serviceaccount/token"))
    admin = File.read!(Path.join(sim.dir, "admin-token"))

    {:ok, denied} = Watch.start(base ++ [token: service_account])
    eventually(fn -> Watch.health(denied).error == :forbidden end)
    {:ok, allowed} = Watch.start(base ++ [token: admin])
    assert Watch.await_synced(allowed, 10_000)
    assert length(Watch.pods(allowed)) == 3
    assert %{synced: false, error: :forbidden} = Watch.health(denied)
    # The same token again shares the first watch.
    {:ok, again} = Watch.start(base ++ [token: service_account])
    refute Watch.await_synced(again, 200)
  end

  test "a rejected token surfaces as an :api_error event and in health", %{sim: sim} do
    options =
      Keyword.merge(Simulator.watch_options(sim), token_file: nil, token: "s3cr3t-token-value")

    {:ok, watch} = Watch.start(options)
    tag = Watch.subscribe(watch)
    assert {:api_error, message} = next_event(tag)
    assert message =~ "401 Unauthorized"
    refute message =~ "s3cr3t"
    refute Watch.await_synced(watch, 100)
    assert %{synced: false, last_error: ^message} = Watch.health(watch)
    # A subscriber that comes after the error was published still hears of it.
    late = Watch.subscribe(watch)
    assert {:api_error, ^message} = next_event(late, 1_000)
  end
end
