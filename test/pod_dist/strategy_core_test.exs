defmodule PodDist.Strategy.CoreTest do
  # The membership decisions, fed events and read as effects: no API, no NIF, no node.
  use ExUnit.Case, async: true

  alias PodDist.Strategy.{Config, Core, Nodes}

  defp core(config \\ [], own_host \\ "me") do
    {:ok, config} = Config.validate(Keyword.merge([node_basename: "app"], config), :epmd)
    Core.configure(Core.new(:test), config, own_host)
  end

  defp pod(name, opts \\ []) do
    Map.merge(
      %{
        uid: "uid-#{name}",
        namespace: "default",
        name: name,
        ip: {198, 51, 100, :erlang.phash2(name, 250) + 1},
        ips: [],
        hostname: nil,
        subdomain: nil,
        node_name: "node-1",
        phase: :running,
        ready: true,
        terminating: false,
        labels: %{},
        annotations: %{},
        ports: [],
        dist_ports: []
      },
      Map.new(opts)
    )
    |> with_hosts()
  end

  # The host forms the native side builds for a pod (only the two these tests use).
  defp with_hosts(pod) do
    ip = pod.ip && pod.ip |> :inet.ntoa() |> to_string()
    hosts = Map.new(Config.host_forms(), &{&1, nil})
    Map.put_new(pod, :hosts, %{hosts | pod_name: pod.name, ip: ip})
  end

  # Feeds events in order; returns the core and every effect, in order.
  defp feed(core, events) do
    Enum.reduce(List.wrap(events), {core, []}, fn event, {core, effects} ->
      {core, more} = Core.handle(core, event)
      {core, effects ++ more}
    end)
  end

  defp of(effects, kind), do: for({^kind, value} <- effects, do: value)
  defp named(pod, nodes), do: {:named, pod.uid, nodes}

  describe "starting" do
    defp starts(effects), do: for({:start, after: ms} <- effects, do: ms)
    defp logs(effects), do: for({:log, level, message} <- effects, do: {level, message})

    test "a NIF that cannot load: said once, retried with backoff up to 30 s" do
      failure =
        {:nif_unavailable, "cannot load its NIF priv/pod_dist_nif.so: not found",
         "run `mix compile`"}

      {core, effects} = feed(Core.new(:k8s), List.duplicate(failure, 7))

      assert starts(effects) == [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
      assert [{:error, message}] = logs(effects)
      assert message =~ "PodDist.Strategy: cannot load its NIF priv/pod_dist_nif.so: not found"
      assert message =~ "Fix: run `mix compile`"
      # Nothing to decide from meanwhile: no config, nobody connected.
      assert %{config: [], life: :waiting, own_pod: nil, nodes: %{}} = Core.info(core)
    end

    test "a watch that cannot start: said again only when the reason changes; a new backoff" do
      {core, effects} =
        feed(Core.new(:k8s), [
          {:nif_unavailable, "cannot load its NIF x.so: missing", "build it"},
          {:nif_unavailable, "cannot load its NIF x.so: missing", "build it"},
          {:watch_unavailable, "no token"},
          {:watch_unavailable, "no token"},
          {:watch_unavailable, "no CA file"}
        ])

      assert starts(effects) == [1_000, 2_000, 1_000, 2_000, 4_000]

      assert [_nif, {:error, "PodDist.Strategy: cannot watch pods: no token;" <> _}, {:error, ca}] =
               logs(effects)

      assert ca =~ "cannot watch pods: no CA file"

      {core, effects} = feed(Core.configure(core, [reconcile_interval: 500], "me"), :started)

      assert [{:log, :info, "PodDist.Strategy: watching pods now"}, {:timer, 0, :reconcile}] =
               effects

      assert {_, [:refresh, {:timer, 500, :reconcile}]} = feed(core, :reconcile)
      # Started: a later failure starts its backoff anew, and says so.
      assert {_, [{:log, :error, _}, {:start, after: 1_000}]} =
               feed(core, {:watch_unavailable, "no token"})
    end

    test "started at once: nothing to say; a snapshot next, then every reconcile_interval" do
      assert {core, [{:timer, 0, :reconcile}]} = feed(core(), :started)
      assert {_, [:refresh, {:timer, 30_000, :reconcile}]} = feed(core, :reconcile)
    end

    test "synced, as the watch says before its health does: no pod of ours makes us a member" do
      {core, [:refresh]} = feed(core(), :synced)
      {core, _} = feed(core, {:index, [pod("peer")], false})
      assert Core.life(core) == :member
      # Not synced, nothing to go by: we wait.
      {core, _} = feed(core(), {:index, [pod("peer")], false})
      assert Core.life(core) == :waiting
    end
  end

  describe "config, without the NIF" do
    test "nodes: defaults by the epmd mode given; host forms are checked" do
      assert {:ok, config} = Config.validate([], :epmdless)
      assert config[:nodes] == :declared
      assert {:ok, config} = Config.validate([], :epmd)
      assert config[:nodes] == :epmd

      assert {:error,
              "PodDist.Strategy config :host: must be :pod_name, :ip, :dashed_ip or " <> _} =
               Config.validate([host: :fqdn], :epmd)

      for form <- Config.host_forms(), do: assert({:ok, _} = Config.validate([host: form], :epmd))
    end
  end

  describe "life cycle" do
    test "waits for our pod to be eligible, then connects every named pod" do
      me = pod("me", ready: false)
      peer = pod("peer")
      {core, effects} = feed(core(), [{:index, [me, peer], true}])
      assert Core.life(core) == :waiting
      # Eligible pods are named while waiting, and connected to nobody.
      assert [{^peer, []}] = for({:name, p, k} <- effects, do: {p, k})
      {core, effects} = feed(core, named(peer, [:app@peer]))
      assert of(effects, :connect) == []

      # Our pod turns Ready: its other nodes are candidates too; everyone is reached.
      ready = %{me | ready: true}
      {core, effects} = feed(core, {:changed, me, ready})
      assert Core.life(core) == :member
      assert [:refresh, {:name, ^ready, []}] = effects
      {core, effects} = feed(core, {:index, [ready, peer], true})
      assert of(effects, :connect) == [[:app@peer]]
      {_core, effects} = feed(core, named(ready, [:app@me, :worker@me]))
      assert of(effects, :connect) == [[:app@me, :worker@me]]
    end

    test "a synced index without our pod: nothing to wait for; unsynced: wait" do
      assert Core.life(elem(feed(core(), {:index, [pod("peer")], false}), 0)) == :waiting
      assert Core.life(elem(feed(core(), {:index, [pod("peer")], true}), 0)) == :member
    end

    test "our pod terminating: leave once, then cut whoever comes back; our pod's nodes stay" do
      me = pod("me")
      {core, _} = feed(core(), [{:index, [me, pod("peer")], true}])
      assert Core.life(core) == :member

      {core, effects} = feed(core, {:changed, me, %{me | terminating: true}})
      assert Core.life(core) == :leaving
      assert Enum.count(effects, &(&1 == :leave)) == 1
      {core, effects} = feed(core, {:changed, me, %{me | terminating: true, ready: false}})
      refute :leave in effects

      {core, effects} = feed(core, [{:nodeup, :app@peer, pod("peer")}, {:nodeup, :worker@me, me}])
      assert of(effects, :disconnect) == [[:app@peer]]
      # A naming answer or a reconnect timer connects nobody now.
      {core, effects} = feed(core, [named(pod("peer"), [:app@peer]), {:reconnect, :app@peer}])
      assert of(effects, :connect) == []
      {_core, effects} = feed(core, {:index, [pod("peer")], true})
      assert effects == [:disconnect_outsiders]
    end

    test "our pod deleted with a grace never seen terminating: its last state is evidence" do
      me = pod("me")
      {core, _} = feed(core(), [{:index, [me], true}])
      {core, effects} = feed(core, {:deleted, %{me | terminating: true}})
      assert Core.life(core) == :leaving
      assert :leave in effects
    end

    test "disconnect_deleted: false leaves a deleted peer's nodes to go by themselves" do
      peer = pod("peer")

      {core, _} =
        feed(core(disconnect_deleted: false), [
          {:index, [pod("me"), peer], true},
          named(peer, [:app@peer])
        ])

      {_core, effects} = feed(core, {:deleted, %{peer | terminating: true}})
      assert [{:telemetry, [:discovery], _, %{change: :left}}] = effects
    end
  end

  describe "evidence, never absence" do
    test "our pod vanishing from the watch (a label removed, a Service re-created) is no reason to leave" do
      me = pod("me")
      {core, _} = feed(core(), [{:index, [me, pod("peer")], true}])
      {core, effects} = feed(core, {:deleted, me})
      assert Core.life(core) == :member
      refute :leave in effects
      assert [{:log, :warning, message}] = effects
      assert message =~ "vanished"
      # It comes back: still a member, nothing left to do.
      {core, effects} = feed(core, {:added, me})
      assert Core.life(core) == :member
      refute :leave in effects
      assert {_, effects} = feed(core, {:index, [me, pod("peer")], true})
      refute :disconnect_outsiders in effects
    end

    test "our pod not Ready yet vanishing from a synced index does not make us a member" do
      me = pod("me", ready: false)
      {core, _} = feed(core(), [{:index, [me, pod("peer")], true}])
      {core, _} = feed(core, [{:deleted, me}, {:index, [pod("peer")], true}])
      assert Core.life(core) == :waiting
    end

    test "our pod Failed or Succeeded is evidence: we leave" do
      for phase <- [:failed, :succeeded] do
        me = pod("me")
        {core, _} = feed(core(), [{:index, [me], true}])
        {core, effects} = feed(core, {:changed, me, %{me | phase: phase, ready: false}})
        assert Core.life(core) == :leaving
        assert :leave in effects
      end
    end

    test "our pod deleted with a last state of terminating: we left already, once" do
      me = pod("me")
      {core, _} = feed(core(), [{:index, [me], true}])
      {core, effects} = feed(core, {:changed, me, %{me | terminating: true}})
      assert :leave in effects
      {core, effects} = feed(core, {:deleted, %{me | terminating: true}})
      assert Core.life(core) == :leaving
      refute :leave in effects
    end

    test "host: :ip: another pod holding our IP, dead or terminating, never makes us leave" do
      me = pod("me", ip: {198, 51, 100, 7})
      old = pod("old", ip: {198, 51, 100, 7}, phase: :failed, ready: false)
      dying = pod("dying", ip: {198, 51, 100, 7}, terminating: true)
      {core, effects} = feed(core([host: :ip], "198.51.100.7"), {:index, [old, me, dying], true})
      assert Core.life(core) == :member
      assert core.own_pod.uid == me.uid
      refute :leave in effects
      # The same pods arriving one by one, in any order.
      {core, effects} =
        feed(core, [{:added, old}, {:changed, dying, dying}, {:deleted, dying}, {:deleted, old}])

      assert Core.life(core) == :member
      refute :leave in effects
      refute :disconnect_outsiders in effects
      # Before our pod is listed, the live one is ours whichever comes first.
      {core, _} = feed(core([host: :ip], "198.51.100.7"), {:index, [dying, old, me], true})
      assert core.own_pod.uid == me.uid
    end

    test "leaving is final: a pod of our name that is not terminating does not bring us back" do
      me = pod("me")
      {core, _} = feed(core(), [{:index, [me, pod("peer")], true}])
      {core, _} = feed(core, {:changed, me, %{me | terminating: true}})

      {core, _} =
        feed(core, [{:deleted, %{me | terminating: true}}, {:added, pod("me", uid: "uid-me-2")}])

      assert Core.life(core) == :leaving
      {_core, effects} = feed(core, {:index, [pod("me", uid: "uid-me-2"), pod("peer")], true})
      assert effects == [:disconnect_outsiders]
    end

    test "a peer that vanishes without evidence stays connected, and is no longer called back" do
      peer = pod("peer")
      {core, _} = feed(core(), [{:index, [pod("me"), peer], true}, named(peer, [:app@peer])])
      {core, effects} = feed(core, {:deleted, peer})
      assert of(effects, :disconnect) == []
      assert of(effects, :timer) == []
      refute :disconnect_outsiders in effects
      assert {_, []} = feed(core, {:nodeup, :app@peer, nil})
      assert {_, []} = feed(core, {:nodedown, :app@peer, :connection_closed})
      assert {_, []} = feed(core, {:nodedown, :app@peer, :disconnect})
      # Back, it is named and connected as before.
      {core, effects} = feed(core, {:added, peer})
      assert [{:name, ^peer, []}] = effects
      assert {_, [_, {:connect, [:app@peer]}]} = feed(core, named(peer, [:app@peer]))
    end

    test "a peer deleted with a last state of terminating or dead departs" do
      for last <- [%{terminating: true}, %{phase: :failed, ready: false}] do
        peer = pod("peer")
        {core, _} = feed(core(), [{:index, [pod("me"), peer], true}, named(peer, [:app@peer])])
        {_core, effects} = feed(core, {:deleted, Map.merge(peer, last)})

        assert [
                 {:telemetry, [:discovery], _, %{change: :left}},
                 {:timer, _, {:disconnect_departed, _, _}} | _
               ] = effects
      end
    end

    test "a peer that turns Failed departs" do
      peer = pod("peer")
      {core, _} = feed(core(), [{:index, [pod("me"), peer], true}, named(peer, [:app@peer])])
      {_core, effects} = feed(core, {:changed, peer, %{peer | phase: :failed, ready: false}})
      assert [{:telemetry, [:discovery], _, %{change: :left}} | _] = effects
    end

    test "a departed uid that comes back not terminating never left: cleared, never cut" do
      peer = pod("peer")
      {core, _} = feed(core(), [{:index, [pod("me"), peer], true}, named(peer, [:app@peer])])

      {core, [_, {:timer, _, disconnect_departed} | _]} =
        feed(core, {:changed, peer, %{peer | terminating: true}})

      {core, _} = feed(core, {:changed, %{peer | terminating: true}, peer})
      assert {core, []} = feed(core, {:nodeup, :app@peer, peer})
      assert {_core, effects} = feed(core, disconnect_departed)
      assert of(effects, :disconnect) in [[], [[]]]
    end
  end

  describe "readiness" do
    test "a Ready peer that loses readiness stays connected; a node that hung up is called back only once Ready" do
      peer = pod("peer")
      {core, _} = feed(core(), [{:index, [pod("me"), peer], true}, named(peer, [:app@peer])])
      unready = %{peer | ready: false}
      {core, effects} = feed(core, {:changed, peer, unready})
      assert of(effects, :disconnect) == []
      assert {_, []} = feed(core, {:nodeup, :app@peer, unready})

      for reason <- [:connection_closed, :disconnect, :net_tick_timeout] do
        {_core, effects} = feed(core, {:nodedown, :app@peer, reason})
        # Nor later, whatever timer was set.
        later = for {:timer, _, event} <- effects, do: event
        assert of(effects ++ elem(feed(core, later), 1), :connect) == []
      end

      assert {_, []} = feed(core, [{:release, :app@peer}, {:reconnect, :app@peer}])
      {core, effects} = feed(core, {:index, [pod("me"), unready], true})
      assert of(effects, :connect) == []

      # Ready again: called back (at the next snapshot at the latest).
      {_core, effects} =
        feed(core, [{:changed, unready, peer}, {:index, [pod("me"), peer], true}])

      assert {:connect, [:app@peer]} in effects
    end
  end

  describe "naming" do
    test ":epmd asks a pod's epmd when it becomes eligible and when a node of it goes down" do
      peer = pod("peer")
      {core, effects} = feed(core([nodes: :epmd], "me"), {:index, [peer], true})
      assert [{^peer, []}] = for({:name, p, k} <- effects, do: {p, k})
      {core, _} = feed(core, named(peer, [:app@peer]))

      # Snapshots and status changes of a named pod ask nobody.
      {core, effects} =
        feed(core, [{:index, [peer], true}, {:changed, peer, %{peer | labels: %{"x" => "1"}}}])

      assert for({:name, _, _} <- effects, do: 1) == []
      assert effects == [{:connect, [:app@peer]}]

      {core, effects} = feed(core, {:nodedown, :app@peer, :net_tick_timeout})

      assert [{:name, %{uid: "uid-peer"}, [:app@peer]}, {:timer, _, {:reconnect, :app@peer}}] =
               effects

      {_core, effects} = feed(core, {:reconnect, :app@peer})
      assert effects == [{:connect, [:app@peer]}]
    end

    test ":epmd asks again at snapshots while a pod has no names yet" do
      peer = pod("peer")
      {core, _} = feed(core([nodes: :epmd], "me"), [{:index, [peer], true}, named(peer, [])])
      {_core, effects} = feed(core, {:index, [peer], true})
      assert [{:name, ^peer, []}] = effects
    end

    test "an unknown node of a followed pod coming up makes its epmd be asked again" do
      peer = pod("peer")

      {core, _} =
        feed(core([nodes: :epmd], "me"), [{:index, [peer], true}, named(peer, [:a@peer])])

      # A remote shell into that pod is no reason to ask.
      assert {_, []} = feed(core, {:nodeup, :"rem-1a2b-a@peer", peer})
      {_core, effects} = feed(core, {:nodeup, :b@peer, peer})
      assert [{:name, %{uid: "uid-peer"}, [:a@peer]}] = effects
    end

    test "one naming per pod at a time; the 16-name cap holds however answers interleave" do
      peer = pod("peer")
      {core, _} = feed(core([nodes: :epmd], "me"), [{:index, [peer], true}])
      # Asked again while the first naming runs: no second naming yet.
      {core, effects} = feed(core, [{:nodeup, :x@peer, peer}, {:index, [peer], true}])
      assert for({:name, _, _} <- effects, do: 1) == []

      many = for i <- 1..20, do: :"n#{i}@peer"
      {core, effects} = feed(core, named(peer, many))
      assert [nodes] = of(effects, :connect)
      assert length(nodes) == 16
      # The ask that waited runs now, knowing the 16 names.
      assert [{:name, _, known}] = for({:name, _, _} = e <- effects, do: e)
      assert known == Enum.take(many, 16)

      more = for i <- 21..40, do: :"n#{i}@peer"
      {core, effects} = feed(core, named(peer, more))
      assert of(effects, :connect) == []
      assert length(core.pods["uid-peer"].nodes) == 16
    end

    test "a naming that crashes is said once and tried again with backoff, not at each snapshot" do
      peer = pod("peer")
      {core, _} = feed(core(), [{:index, [pod("me"), peer], true}])
      {core, effects} = feed(core, {:naming_failed, peer.uid, "** (RuntimeError) boom"})
      assert [{:log, :warning, message}, {:timer, first, {:retry_naming, uid} = again}] = effects
      assert message =~ "naming pod peer failed: ** (RuntimeError) boom"
      assert {_, []} = feed(core, {:index, [pod("me"), peer], true})

      {core, [{:name, ^peer, []}]} = feed(core, again)
      {core, [{:timer, second, ^again}]} = feed(core, {:naming_failed, uid, "boom"})
      assert second > first
      {core, _} = feed(core, again)
      {_core, effects} = feed(core, named(peer, [:app@peer]))
      assert {:connect, [:app@peer]} in effects
    end

    test "short-lived names (remote shells, rpc, tooling) never become candidates" do
      names = ["app", "rem-1a2b-app", "rpc-9f3c-app", "maint_app", "maint-x", "remote"]
      {:ok, config} = Config.validate([nodes: fn _pod -> names end], :epmd)
      assert Nodes.names(pod("p"), config) == [:app@p, :remote@p]
      assert Core.short_lived?("rem-1a2b-app")
      refute Core.short_lived?("remote")
    end
  end

  describe "nodes that drop" do
    test "one lost to a blip is called back soon; one that hung up or global cut, seconds later" do
      peer = pod("peer")
      {core, _} = feed(core(), [{:index, [pod("me"), peer], true}, named(peer, [:app@peer])])

      assert {_, [{:timer, ms, {:reconnect, :app@peer}}]} =
               feed(core, {:nodedown, :app@peer, :net_tick_timeout})

      assert ms < 1_000

      # It closed the connection itself, or our global cut it as a third node lost it:
      # it may be leaving, its pod terminating before our watch says so. No connect
      # now, only a later release.
      for reason <- [:disconnect, :connection_closed] do
        assert {_, [{:timer, ms, {:release, :app@peer}}]} =
                 feed(core, {:nodedown, :app@peer, reason})

        assert ms >= 3_000
      end

      {core, effects} = feed(core, {:nodedown, :app@peer, :connection_closed})
      assert [{:timer, _, {:release, :app@peer} = release}] = effects
      # Still eligible by then: connected again.
      assert {_, [{:connect, [:app@peer]}]} = feed(core, release)
      # Its pod was seen terminating meanwhile: nobody is called.
      {core, _} = feed(core, {:changed, peer, %{peer | terminating: true}})
      assert {_, []} = feed(core, release)
    end

    test "a node that hung up or global cut is not connected by snapshots before its release" do
      me = pod("me")
      peer = pod("peer")
      index = {:index, [me, peer], true}
      {core, _} = feed(core(), [index, named(peer, [:app@peer])])

      for reason <- [:disconnect, :connection_closed] do
        {core, [{:timer, _, release}]} = feed(core, {:nodedown, :app@peer, reason})
        # A third node that cannot connect to it yet (its watch lagging) makes global cut
        # it again at each reconnect: snapshots every reconcile_interval must not start
        # that fight over and over.
        assert {core, []} = feed(core, index)
        assert {core, [{:connect, [:app@peer]}]} = feed(core, release)
        # Released: snapshots connect it again.
        assert {_, [{:connect, [:app@peer]}]} = feed(core, index)
      end
    end

    test "with :epmd, a node that hung up is named again only at its release" do
      peer = pod("peer")

      {core, _} =
        feed(core(nodes: :epmd), [{:index, [pod("me"), peer], true}, named(peer, [:app@peer])])

      assert {core, [{:timer, _, release}]} =
               feed(core, {:nodedown, :app@peer, :connection_closed})

      assert {_, [{:name, %{uid: "uid-peer"}, [:app@peer]}, {:connect, [:app@peer]}]} =
               feed(core, release)
    end
  end

  describe "departed pods" do
    test "a deleted pod's nodes get a grace, then are cut; a reconnect through global is refused" do
      peer = pod("peer")
      {core, _} = feed(core(), [{:index, [pod("me"), peer], true}, named(peer, [:app@peer])])
      {core, effects} = feed(core, {:deleted, %{peer | terminating: true}})

      assert [
               {:telemetry, [:discovery], %{nodes: 1}, %{change: :left}},
               {:timer, 1_000, disconnect_departed},
               {:timer, 60_000, forget}
             ] = effects

      {core, effects} = feed(core, disconnect_departed)
      assert effects == [{:disconnect, [:app@peer]}]
      {core, effects} = feed(core, {:nodeup, :app@peer, nil})
      assert effects == [{:disconnect, [:app@peer]}]
      {core, _} = feed(core, forget)
      assert {_, []} = feed(core, {:nodeup, :app@peer, nil})
    end

    test "a StatefulSet pod recreated under the same name is welcome at once, even connecting first" do
      web = pod("web-0")
      {core, _} = feed(core(), [{:index, [pod("me"), web], true}, named(web, [:"app@web-0"])])

      {core, [_, {:timer, _, disconnect_departed} | _]} =
        feed(core, {:deleted, %{web | terminating: true}})

      # The new pod's node connects before its pod is Ready (or named by us).
      new = pod("web-0", uid: "uid-web-0-new", ready: false)
      {core, _} = feed(core, {:added, new})
      assert {_, []} = feed(core, {:nodeup, :"app@web-0", new})
      # The old pod's grace ends: the name is the new pod's now, nobody is cut.
      assert {_, [{:disconnect, []}]} = feed(core, disconnect_departed)
    end

    test "a terminating pod's nodes are let go; a new node of it is refused unless keep_terminating" do
      peer = pod("peer")
      {core, _} = feed(core(), [{:index, [pod("me"), peer], true}, named(peer, [:app@peer])])
      {core, effects} = feed(core, {:changed, peer, %{peer | terminating: true}})
      assert [{:telemetry, [:discovery], _, %{change: :left}} | _] = effects

      assert {_, [{:disconnect, [:worker@peer]}]} =
               feed(core, {:nodeup, :worker@peer, %{peer | terminating: true}})

      {core, _} = feed(core(keep_terminating: true), [{:index, [pod("me"), peer], true}])
      assert {_, []} = feed(core, {:nodeup, :worker@peer, %{peer | terminating: true}})
    end
  end

  describe "explain/3, the eligibility rule the doctor words" do
    test "each reason" do
      {:ok, config} = Config.validate([node_basename: "app", version_label: "v"], :epmd)
      own = pod("me", labels: %{"v" => "2"})

      assert Core.explain(pod("a", labels: %{"v" => "2"}), config, own) == :eligible
      assert Core.explain(pod("a", ip: nil), config, own) == :no_ip
      assert Core.explain(pod("a", terminating: true), config, own) == :terminating
      assert Core.explain(pod("a", ready: false), config, own) == :not_ready
      assert Core.explain(pod("a", labels: %{"v" => "1"}), config, own) == :other_version

      {:ok, running} = Config.validate([node_basename: "app", eligible: :running], :epmd)
      assert Core.explain(pod("a", ready: false), running, nil) == :eligible
      assert Core.explain(pod("a", phase: :pending), running, nil) == :not_running
    end
  end
end
