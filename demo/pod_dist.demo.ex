defmodule Mix.Tasks.PodDist.Demo do
  @shortdoc "Runs real BEAM nodes as pods of a simulated Kubernetes cluster"
  @moduledoc """
  Runs what `examples/kubernetes` describes on this machine: the Kubernetes API
  simulator, the Deployments' pods (one pod with an `api` and a `worker` node, one with
  an `api` node), each node a real BEAM OS process with `PodDist.Epmd` (epmd-less, as
  the manifest says) and `PodDist.Strategy`. It shows the mesh forming with pod-name
  node names, scales up, deletes a pod, and prints the measured join and leave times.

      mix pod_dist.demo
      mix pod_dist.demo --source slices

  `--source slices` applies `examples/kubernetes-slices` instead: the nodes read the
  EndpointSlices of a headless Service and their Role grants nothing on pods (needs
  `kubectl`, which builds that kustomize overlay).

  As root, every pod is a network namespace with its own IP; otherwise pods get
  loopback addresses. Everything it starts is gone when it ends, also when it is
  interrupted (Ctrl-C, then `a`) or killed: a watchdog cleans up after the VM.
  It runs in the test environment, where the multi-pod harness is compiled.
  """
  use Mix.Task

  alias PodDist.SimCase
  alias PodDist.Test.{Cluster, Node}

  @manifests %{"pods" => "examples/kubernetes", "slices" => "examples/kubernetes-slices"}
  @ns "default"

  @impl true
  def run(args) do
    source =
      case OptionParser.parse(args, strict: [source: :string]) do
        {[], [], []} -> "pods"
        {[source: source], [], []} when source in ["pods", "slices"] -> source
        _ -> Mix.raise("usage: mix pod_dist.demo [--source pods|slices]")
      end

    if source == "slices" and System.find_executable("kubectl") == nil,
      do: Mix.raise("--source slices needs kubectl (it builds the kustomize overlay)")

    Mix.Task.run("compile")
    Application.ensure_all_started(:inets)
    world = Map.merge(start_world(), %{source: source, manifests: @manifests[source]})
    watchdog(world)

    try do
      demo(world)
    after
      stop_world(world)
      say("Stopped every node, the simulator and every namespace.")
    end
  end

  ## The story

  defp demo(world) do
    %{"objects" => objects, "pods" => [shop, api]} = manifests(world.manifests)

    case kubectl(world, ["apply", "-k", world.manifests]) do
      {:ok, output} ->
        say("kubectl apply -k #{world.manifests} (the simulator checks every field)")
        for line <- String.split(output, "\n", trim: true), do: IO.puts("  #{line}")

      :no_kubectl ->
        say("Loading #{world.manifests} (strict schema check; kubectl is not installed)")
        for object <- objects, do: IO.puts("  #{object}")
    end

    grant_as_the_role_says(world)

    say("Creating the Deployments' pods (not Ready yet) and starting their nodes")
    pods = for template <- [shop, api], do: start_pod(world, template)
    nodes = Enum.flat_map(pods, & &1.nodes)
    print_pods(pods)

    say("Pods turn Ready; PodDist.Strategy in each node connects the others")
    formed = time(fn -> Enum.each(pods, &ready(world, &1)) end, fn -> mesh?(nodes) end)
    print_mesh(nodes)
    say("Full mesh of #{length(nodes)} nodes in #{formed} ms")

    say("Scaling shop-api up: a new pod from the same template")
    new = start_pod(world, rename(api))
    join = time(fn -> ready(world, new) end, fn -> mesh?(nodes ++ new.nodes) end)
    say("#{Enum.map_join(new.nodes, ", ", & &1.name)} joined every node in #{join} ms")

    [old_api | _] = Enum.filter(pods, &(&1.name == api["metadata"]["name"]))
    say("Deleting pod #{old_api.name} (30 s grace: it starts terminating)")
    rest = (nodes -- old_api.nodes) ++ new.nodes

    leave =
      time(
        fn -> SimCase.delete_pod(world.sim, @ns, old_api.name, 30) end,
        fn -> mesh?(rest) and Enum.all?(old_api.nodes, &(connected(&1) == [])) end
      )

    Enum.each(old_api.nodes, &Node.stop/1)
    SimCase.delete_pod(world.sim, @ns, old_api.name)
    print_mesh(rest)
    say("#{Enum.map_join(old_api.nodes, ", ", & &1.name)} left every node in #{leave} ms")

    IO.puts("""

    Measured: mesh of #{length(nodes)} formed in #{formed} ms, join #{join} ms, leave #{leave} ms
    (#{world.kind}).
    """)
  end

  ## Pods and nodes

  # One pod per template: its own address, its containers' nodes, each node running
  # PodDist.Strategy as the release would.
  defp start_pod(world, template) do
    name = template["metadata"]["name"]
    labels = Map.to_list(template["metadata"]["labels"])
    ip = world.add_pod.(name, spec: template["spec"], labels: labels, ready: false)

    nodes =
      for container <- template["spec"]["containers"] do
        env = for %{"name" => k, "value" => v} <- container["env"], do: {k, v}
        basename = :proplists.get_value("RELEASE_NODE", env)
        node = world.start_node.(basename, name, ip, env)
        {:ok, :ok} = Node.eval(node, strategy_code(world, env))
        node
      end

    %{name: name, ip: ip, nodes: nodes}
  end

  defp strategy_code(world, env) do
    config = [
      api_url: world.api_url,
      ca_file: Path.join(world.sim.dir, "ca.crt"),
      token_file: Path.join(world.sim.dir, "serviceaccount/token"),
      namespaces: [@ns],
      label_selector: :proplists.get_value("POD_DIST_LABEL_SELECTOR", env, nil),
      service: :proplists.get_value("POD_DIST_SERVICE", env, nil)
    ]

    "{:ok, pid} = PodDist.Strategy.start_link(#{inspect(config)}); Process.unlink(pid); :ok"
  end

  # The simulator's RBAC is set through its control API, not from the Role objects it
  # stores: grant what the applied overlay's Role grants (slices, nothing on pods).
  defp grant_as_the_role_says(%{source: "slices"} = world) do
    say("The nodes' Role grants get/list/watch on endpointslices only, nothing on pods")

    SimCase.fault!(world.sim, "rbac",
      namespaces: "*",
      resources: "endpointslices.discovery.k8s.io"
    )
  end

  defp grant_as_the_role_says(_world), do: :ok

  # The kubelet's part: the readiness probe passes.
  defp ready(world, pod), do: SimCase.set_running(world.sim, @ns, pod.name, pod.ip, true)

  # A new replica: same template, a new random suffix, as a ReplicaSet names pods.
  defp rename(template) do
    base = template["metadata"]["name"] |> String.split("-") |> Enum.drop(-1) |> Enum.join("-")
    suffix = for _ <- 1..5, into: "", do: <<Enum.random(~c"bcdfghjklmnpqrstvwxz2456789")>>
    put_in(template, ["metadata", "name"], "#{base}-#{suffix}")
  end

  # kubectl against the simulator, as cluster admin; inside the hub namespace when the
  # API lives there.
  defp kubectl(world, args) do
    with kubectl when kubectl != nil <- System.find_executable("kubectl") do
      dir = world.sim.dir

      base = [
        "--kubeconfig",
        Path.join(dir, "kubeconfig"),
        "--cache-dir",
        Path.join(dir, "kubectl")
      ]

      [command | prefix] = world.in_api_netns ++ [kubectl]

      case System.cmd(command, prefix ++ base ++ args, stderr_to_stdout: true) do
        {output, 0} -> {:ok, output}
        {output, status} -> raise "kubectl #{Enum.join(args, " ")} failed (#{status}): #{output}"
      end
    else
      nil -> :no_kubectl
    end
  end

  defp manifests(dir) do
    yaml =
      case System.find_executable("kubectl") do
        nil -> Enum.map_join(Path.wildcard("#{dir}/[!k]*.yaml"), "\n---\n", &File.read!/1)
        kubectl -> elem(System.cmd(kubectl, ["kustomize", dir]), 0)
      end

    {json, 0} = PodDist.Simulator.check_manifest(yaml)
    PodDist.Test.JSON.decode!(json)
  end

  ## Two worlds: network namespaces as root, loopback addresses otherwise

  defp start_world do
    if root?() and System.get_env("POD_DIST_DEMO_LOOPBACK") != "1" do
      cluster = Cluster.start!(mode: :epmdless, cleanup: :manual)
      say("Simulator in network namespace #{cluster.id}-hub; each pod gets its own namespace")

      %{
        kind: "pods as network namespaces",
        sim: cluster.sim,
        api_url: "https://198.51.100.254:6443",
        in_api_netns: ["ip", "netns", "exec", "#{cluster.id}-hub"],
        cleanup: cluster.id,
        stop: fn -> Cluster.stop(cluster) end,
        add_pod: &Cluster.add_pod!(cluster, &1, &2),
        start_node: fn basename, pod, _ip, env ->
          Cluster.start_node!(cluster, basename, pod, env: env)
        end
      }
    else
      {:ok, sim} = PodDist.Simulator.start([])
      {:ok, agent} = Agent.start(fn -> %{next: 1, nodes: []} end)
      say("Not root: pods get loopback addresses (127.0.1.x), nodes run epmd-less")

      %{
        kind: "pods on loopback addresses",
        sim: sim,
        api_url: sim.url,
        in_api_netns: [],
        cleanup: nil,
        stop: fn ->
          Enum.each(Agent.get(agent, & &1.nodes), &Node.stop/1)
          PodDist.Simulator.stop(sim)
        end,
        add_pod: fn name, opts ->
          ip = "127.0.1.#{Agent.get_and_update(agent, &{&1.next, %{&1 | next: &1.next + 1}})}"
          SimCase.create_pod(sim, @ns, name, Keyword.put(opts, :ip, ip))
          ip
        end,
        start_node: fn basename, pod, ip, env ->
          node = Node.start!(sim, basename, pod, ip: ip, mode: :epmdless, env: env)
          Agent.update(agent, &%{&1 | nodes: [node | &1.nodes]})
          node
        end
      }
    end
  end

  defp stop_world(world), do: world.stop.()

  # If this VM dies without cleaning up (killed, or aborted from the Ctrl-C menu), its
  # ports close: nodes and the simulator exit on their own, and this removes the
  # namespaces.
  defp watchdog(%{cleanup: nil}), do: :ok

  defp watchdog(%{cleanup: id}) do
    script =
      "cat >/dev/null; for ns in $(ip netns list | cut -d' ' -f1 | grep '^#{id}-'); do ip netns del $ns; done"

    Port.open({:spawn_executable, "/bin/sh"}, args: ["-c", script])
  end

  defp root? do
    {uid, 0} = System.cmd("id", ["-u"])
    String.trim(uid) == "0"
  end

  ## Watching the mesh

  defp connected(node) do
    case Node.eval(node, "Enum.sort(Node.list())", 2_000) do
      {:ok, nodes} -> nodes
      _ -> []
    end
  end

  defp mesh?(nodes) do
    names = Enum.map(nodes, & &1.name)
    Enum.all?(nodes, &(connected(&1) == Enum.sort(names -- [&1.name])))
  end

  # Runs `action`, then polls `done?` every 5 ms; the elapsed milliseconds.
  defp time(action, done?) do
    started = System.monotonic_time(:millisecond)
    action.()
    wait(done?, started + 30_000)
    System.monotonic_time(:millisecond) - started
  end

  defp wait(done?, deadline) do
    cond do
      done?.() -> :ok
      System.monotonic_time(:millisecond) > deadline -> Mix.raise("the demo timed out")
      true -> Process.sleep(5) && wait(done?, deadline)
    end
  end

  defp print_pods(pods) do
    for pod <- pods do
      IO.puts(
        "  #{String.pad_trailing(pod.name, 28)} #{String.pad_trailing(pod.ip, 16)} " <>
          Enum.map_join(pod.nodes, " ", & &1.name)
      )
    end
  end

  defp print_mesh(nodes) do
    for node <- nodes do
      peers = connected(node)
      IO.puts("  #{String.pad_trailing(to_string(node.name), 36)} -> #{Enum.join(peers, ", ")}")
    end
  end

  defp say(text), do: IO.puts(IO.ANSI.format([:bright, "==> ", :reset, text]))
end
