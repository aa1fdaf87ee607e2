# Partition soak (issue 24): real BEAM nodes, each in its own pod (a network namespace),
# each running PodDist.Strategy (odd pods read the EndpointSlices of a headless Service,
# even pods watch pods by label), while random day-2 operations and API faults run for
# `--seconds`: a pod's label flipped, the Service deleted and re-created or its selector
# edited, an evicted or a terminating pod holding a node's IP, a forged slice (no
# managed-by label) naming a pod at another pod's IP, the token rotated, an API outage,
# and real departures (a pod deleted with a grace; its VM stops; a new pod joins).
#
# Throughout it checks that every connection goes to the pod its node name means (the
# connection's real address is that pod's IP). Every nodedown is reported with its
# cause: a real departure explains the nodedowns of the leaving node (one per peer, and
# one per peer in the leaving node); any other nodedown is unexplained, listed with the
# operations of the seconds before it, and fails the run (exit status 1).
#
#     MIX_ENV=test mix run bench/partition_soak.exs -- --nodes 6 --seconds 600 --seed 1
#
# `--ops departure,label_flip` runs only those operations; `--departures 8` stops after
# that many departures (e.g. the cost of real departures alone:
# `--nodes 4 --ops departure --departures 8 --seconds 600`).
#
# (MIX_ENV=test: it uses the multi-pod harness in test/support; needs root.)

alias PodDist.Test.{Cluster, Membership, Node}

%{nodes: count, seconds: seconds, seed: seed, ops: ops, departures: departures} =
  PodDist.Test.Bench.options(nodes: 3, seconds: 10, seed: 0, ops: "all", departures: 0)

seed = if seed == 0, do: System.unique_integer([:positive]), else: seed
:rand.seed(:exsss, {seed, seed, seed})

defmodule PartitionSoak do
  import PodDist.SimCase, only: [fault!: 3, create_pod: 4, api: 4, eventually: 2]

  @service "soak-dist"
  # How long before a nodedown an operation may have caused it.
  @blame_ms 6_000

  def start(count) do
    cluster = Cluster.start!(mode: :epmd, cleanup: :manual)

    fault!(cluster.sim, "rbac",
      namespaces: "*",
      resources: "pods,endpointslices.discovery.k8s.io"
    )

    Membership.create_service!(cluster.sim, @service, "soak")
    world = %{cluster: cluster, live: %{}, ips: %{}, next: 1, departed: [], log: [], stats: %{}}
    world = Enum.reduce(1..count, world, fn _, world -> add_node(world) end)
    nodes = Map.values(world.live)
    eventually(fn -> Membership.mesh?(nodes) end, 60_000)
    Enum.each(nodes, &Membership.record_nodedowns!/1)
    world
  end

  # A new pod with one node running the strategy (odd pods: slice source).
  def add_node(world) do
    n = world.next
    pod = "pod-#{n}"
    ip = Cluster.add_pod!(world.cluster, pod, labels: [app: "soak"])
    slices? = rem(n, 2) == 1
    env = if slices?, do: [{"POD_DIST_SERVICE", @service}], else: []
    node = Cluster.start_node!(world.cluster, "app", pod, env: env)
    source = if slices?, do: [service: @service], else: [label_selector: "app=soak"]
    Cluster.start_strategy!(world.cluster, node, source)

    %{
      world
      | live: Map.put(world.live, pod, node),
        ips: Map.put(world.ips, pod, ip),
        next: n + 1
    }
  end

  @ops [
    :label_flip,
    :service_recreate,
    :selector_edit,
    :evicted_ip,
    :terminating_ip,
    :forged_slice,
    :token_rotation,
    :api_outage,
    :departure
  ]

  def run(world, deadline, ops, departures) do
    world = check(world)

    ops =
      if ops == "all",
        do: @ops,
        else: ops |> String.split(",") |> Enum.map(&String.to_existing_atom/1)

    cond do
      System.monotonic_time(:millisecond) > deadline ->
        world

      departures > 0 and length(world.departed) >= departures ->
        world

      true ->
        op = Enum.random(ops)
        world = note(world, op)
        world = op(op, world)
        Process.sleep(:rand.uniform(500))
        run(world, deadline, Enum.join(ops, ","), departures)
    end
  end

  defp note(world, op) do
    %{
      world
      | log: [{System.os_time(:millisecond), op} | world.log],
        stats: Map.update(world.stats, op, 1, &(&1 + 1))
    }
  end

  defp random_pod(world), do: world.live |> Map.keys() |> Enum.random()

  defp op(:label_flip, world) do
    pod = random_pod(world)
    Membership.label!(world.cluster.sim, pod, "app", nil)
    Process.sleep(300 + :rand.uniform(1_200))
    Membership.label!(world.cluster.sim, pod, "app", "soak")
    world
  end

  defp op(:service_recreate, world) do
    Membership.delete_service!(world.cluster.sim, @service)
    Process.sleep(500 + :rand.uniform(2_500))
    Membership.create_service!(world.cluster.sim, @service, "soak")
    world
  end

  defp op(:selector_edit, world) do
    Membership.patch_service!(world.cluster.sim, @service, %{selector: %{app: "nothing"}})
    Process.sleep(500 + :rand.uniform(2_500))
    Membership.patch_service!(world.cluster.sim, @service, %{selector: %{app: "soak"}})
    world
  end

  defp op(:evicted_ip, world) do
    name = "evicted-#{System.os_time(:microsecond)}"
    ip = world.ips[random_pod(world)]
    create_pod(world.cluster.sim, "default", name, ip: ip, labels: [app: "soak"])
    PodDist.SimCase.evict(world.cluster.sim, "default", name)
    world
  end

  defp op(:terminating_ip, world) do
    name = "finished-#{System.os_time(:microsecond)}"
    ip = world.ips[random_pod(world)]
    create_pod(world.cluster.sim, "default", name, ip: ip, labels: [app: "soak"])
    PodDist.SimCase.delete_pod(world.cluster.sim, "default", name, 5)
    world
  end

  defp op(:forged_slice, world) do
    [named, other] = world.live |> Map.keys() |> Enum.take_random(2) |> pad()
    name = "forged-#{System.os_time(:microsecond)}"

    slice = %{
      metadata: %{name: name, labels: %{"kubernetes.io/service-name" => @service}},
      addressType: "IPv4",
      endpoints: [
        %{
          addresses: [world.ips[other]],
          conditions: %{ready: true, serving: true, terminating: false},
          targetRef: %{kind: "Pod", namespace: "default", name: named, uid: "forged-#{name}"}
        }
      ],
      ports: [%{name: "epmd", port: 4369, protocol: "TCP"}]
    }

    path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
    {:ok, 201, _} = api(world.cluster.sim, :post, path, slice)
    Process.sleep(500 + :rand.uniform(2_000))
    {:ok, 200, _} = api(world.cluster.sim, :delete, "#{path}/#{name}", nil)
    world
  end

  defp op(:token_rotation, world) do
    fault!(world.cluster.sim, "faults/rotate-token", [])
    world
  end

  defp op(:api_outage, world) do
    fault!(world.cluster.sim, "faults/unavailable", seconds: 1 + :rand.uniform(3))
    Process.sleep(1_000)
    world
  end

  # A real departure: the pod terminates, its node leaves, its VM stops; a new pod joins.
  defp op(:departure, world) when map_size(world.live) < 3, do: world

  defp op(:departure, world) do
    pod = random_pod(world)
    node = world.live[pod]
    PodDist.SimCase.delete_pod(world.cluster.sim, "default", pod, 30)
    # The kubelet's SIGTERM, a moment later: the VM stops.
    Process.sleep(1_500)
    downs = Membership.nodedowns(node)
    Node.stop(node)
    Cluster.remove_netns!(world.cluster, pod)

    world = %{
      world
      | live: Map.delete(world.live, pod),
        departed: [{node.name, downs} | world.departed]
    }

    world = add_node(world)
    new = world.live["pod-#{world.next - 1}"]
    Membership.record_nodedowns!(new)
    world
  end

  defp pad([a]), do: [a, a]
  defp pad(list), do: list

  # Every connection goes to the pod its node's name means.
  defp check(world) do
    wrong =
      for {pod, node} <- world.live,
          {peer, ip} <- Membership.peer_ips(node),
          host = peer |> Atom.to_string() |> String.split("@") |> List.last(),
          expected = world.ips[host],
          # nil: the connection is being set up or torn down; its address is not known.
          ip != nil and ip != expected,
          do: {pod, peer, ip, expected}

    if wrong != [] do
      IO.puts("WRONG POD: #{inspect(wrong)}")
      Map.update(world, :wrong, wrong, &(&1 ++ wrong))
    else
      world
    end
  end

  def report(world, seed, seconds) do
    departed = MapSet.new(world.departed, &elem(&1, 0))
    live = Map.values(world.live)

    downs =
      Enum.flat_map(live, fn n -> for d <- Membership.nodedowns(n), do: {n.name, d} end) ++
        Enum.flat_map(world.departed, fn {name, ds} -> for d <- ds, do: {name, d} end)

    {explained, others} =
      Enum.split_with(downs, fn {observer, {node, _reason, _at}} ->
        node in departed or observer in departed
      end)

    # Between two nodes that stay, in the seconds after a departure: the leaving node's
    # `global`, before its own watch saw the termination, cut them apart (it prevents
    # overlapping partitions when the others let it go). Caused by the departure, and a
    # cost beyond the ideal: reported apart.
    departures = for {t, :departure} <- world.log, do: t

    {collateral, unexplained} =
      Enum.split_with(others, fn {_observer, {_node, _reason, at}} ->
        Enum.any?(departures, &(&1 <= at and &1 > at - @blame_ms))
      end)

    ideal = ideal_departure_downs(world)

    IO.puts("""

    Partition soak: #{map_size(world.live)} live nodes, #{seconds} s, seed #{seed}
    operations: #{inspect(Enum.sort(world.stats))}
    nodedowns: #{length(downs)} (#{length(explained)} of departing nodes in #{length(world.departed)} departures, ideal #{ideal}; #{length(collateral)} between staying nodes right after a departure; #{length(unexplained)} unexplained)
    connections to a pod other than the one the name means: #{length(Map.get(world, :wrong, []))}
    """)

    # A departure ideally costs each pair one nodedown: more says who fought, and why.
    for {{observer, node}, downs} <- Enum.group_by(explained, fn {o, {n, _, _}} -> {o, n} end),
        length(downs) > 1 do
      reasons = Enum.map(downs, fn {_, {_, reason, _}} -> reason end)
      IO.puts("  #{observer} lost #{node} #{length(downs)} times: #{inspect(reasons)}")
    end

    for {observer, {node, reason, at} = down} <- collateral ++ unexplained do
      before = for {t, op} <- world.log, t <= at, t > at - @blame_ms, do: {at - t, op}

      kind = if {observer, down} in collateral, do: "AFTER A DEPARTURE", else: "UNEXPLAINED"

      IO.puts(
        "  #{kind} #{observer} lost #{node} (#{reason}); ops before (ms ago): #{inspect(before)}"
      )
    end

    mesh = Membership.mesh?(live)
    global = Membership.global_sees?(hd(live), live, :"soak_#{seed}")

    IO.puts(
      "mesh whole at the end: #{mesh}; a name registered with global seen by all: #{global}"
    )

    unexplained == [] and Map.get(world, :wrong, []) == [] and mesh and global
  end

  # Each departure ideally costs the leaving node one nodedown per peer and each peer
  # one: 2 x peers at the time (the cluster size stays `count`).
  defp ideal_departure_downs(world),
    do: length(world.departed) * 2 * (map_size(world.live) - 1)
end

world = PartitionSoak.start(count)

ok =
  try do
    deadline = System.monotonic_time(:millisecond) + seconds * 1_000
    world = PartitionSoak.run(world, deadline, ops, departures)
    # Past every recall (3 s) and the last operations' effects.
    Process.sleep(6_000)
    PartitionSoak.report(world, seed, seconds)
  after
    Cluster.stop(world.cluster)
  end

unless ok, do: System.halt(1)
