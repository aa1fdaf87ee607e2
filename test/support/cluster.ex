defmodule PodDist.Test.Cluster do
  @moduledoc """
  A simulated Kubernetes cluster on this machine, for multi-pod tests with real BEAM
  nodes (needs root, for network namespaces).

  Every pod is a Linux network namespace with its own address in 198.51.100.0/24 (a
  range that exists only inside these namespaces), loopback up and, in epmd mode, its
  own epmd. A hub namespace holds the bridge and the API simulator. Nothing in the
  host's own network configuration changes. Each pod also exists as a Pod object,
  Running and Ready, so PodDist resolves its name.

      cluster = Cluster.start!(mode: :epmd)
      Cluster.add_pod!(cluster, "pod-a")
      Cluster.add_pod!(cluster, "pod-b")
      a = Cluster.start_node!(cluster, "app", "pod-a")
      b = Cluster.start_node!(cluster, "app", "pod-b")
      {:ok, true} = Node.eval(a, ~s(Node.connect(:"app@pod-b")))

  `start!/1` registers cleanup with `ExUnit.Callbacks.on_exit/1`.
  """

  import ExUnit.Callbacks, only: [on_exit: 1]

  alias PodDist.{Simulator, Test.Node}

  defstruct [:id, :sim, :mode, :agent]

  @subnet "198.51.100"
  # IPv6 documentation prefix, only ever inside the test namespaces.
  @subnet6 "2001:db8:5133"
  @api_ip "198.51.100.254"

  @doc """
  Creates the hub namespace and starts the simulator in it. Options: `:mode` (`:epmd` or
  `:epmdless`), `:cleanup` (`:on_exit`, the default, or `:manual`: call `stop/1`).
  """
  def start!(opts \\ []) do
    # Names the VM that made it (its OS pid), so runs side by side never collide and a
    # sweep only removes what dead runs left. Short: veth names take 15 characters.
    id = "kd#{base36(System.pid())}n#{base36(System.unique_integer([:positive]))}"

    {:ok, agent} =
      Agent.start(fn -> %{pods: %{}, epmds: %{}, procs: %{}, sims: [], nodes: [], next_ip: 1} end)

    cluster = %__MODULE__{id: id, mode: Keyword.get(opts, :mode, :epmd), agent: agent}
    # Benchmarks run outside ExUnit and call stop/1 themselves.
    if Keyword.get(opts, :cleanup, :on_exit) == :on_exit, do: on_exit(fn -> stop(cluster) end)

    hub = hub(cluster)
    ip!(["netns", "add", hub])
    ip!(["-n", hub, "link", "set", "lo", "up"])
    ip!(["-n", hub, "link", "add", "br0", "type", "bridge"])
    ip!(["-n", hub, "addr", "add", "#{@api_ip}/24", "dev", "br0"])
    ip!(["-n", hub, "link", "set", "br0", "up"])

    {:ok, sim} =
      Simulator.start(netns: hub, listen: "#{@api_ip}:6443", san: [@api_ip, "127.0.0.1"])

    Agent.update(agent, &Map.update!(&1, :sims, fn sims -> [sim | sims] end))
    %{cluster | sim: sim}
  end

  @doc """
  Adds a pod: a namespace with the next free address, and a Ready Pod object for it.
  Options: `:labels`, `:ports` (`[{"dist-api", 4371}]`), `:ip` (reuse a given address),
  `:ready`, `:dual_stack` (the pod also gets an IPv6 address in `#{@subnet6}::/64`, listed
  second in its `podIPs`; see `pod_ip6/2`). In epmd mode the pod gets its own epmd, unless `epmd: false` (then port 4369
  is free for a stand-in, see `netns_path/2`). Returns the pod's IP.
  """
  def add_pod!(cluster, name, opts \\ []) do
    ip = Keyword.get_lazy(opts, :ip, fn -> next_ip(cluster) end)
    ns = netns(cluster, name)
    veth = "#{cluster.id}v#{System.unique_integer([:positive]) |> rem(1000)}"
    ip!(["netns", "add", ns])
    ip!(["-n", ns, "link", "set", "lo", "up"])

    ip!([
      "-n",
      hub(cluster),
      "link",
      "add",
      veth,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      ns
    ])

    ip!(["-n", hub(cluster), "link", "set", veth, "master", "br0", "up"])
    ip!(["-n", ns, "addr", "add", "#{ip}/24", "dev", "eth0"])
    # nodad: usable at once, no duplicate address detection delay.
    ip6 = if opts[:dual_stack], do: "#{@subnet6}::#{ip |> String.split(".") |> List.last()}"
    if ip6, do: ip!(["-n", ns, "addr", "add", "#{ip6}/64", "dev", "eth0", "nodad"])
    ip!(["-n", ns, "link", "set", "eth0", "up"])
    track(cluster, :pods, name, %{ns: ns, ip: ip, ip6: ip6})

    # A reused IP has a new MAC address: like a CNI plugin, make the neighbours forget the old one.
    if opts[:ip] do
      for {_, %{ns: other}} <- Agent.get(cluster.agent, & &1.pods), other != ns do
        ip!(["-n", other, "neigh", "flush", "all"])
      end
    end

    if cluster.mode == :epmd and Keyword.get(opts, :epmd, true) do
      epmd =
        Port.open({:spawn_executable, ip_path()}, [
          :binary,
          args: ["netns", "exec", ns, System.find_executable("epmd")]
        ])

      {:os_pid, pid} = Port.info(epmd, :os_pid)
      track(cluster, :epmds, name, pid)

      wait_for_epmd(ns)
    end

    pod_opts =
      opts
      |> Keyword.drop([:epmd, :dual_stack])
      |> Keyword.merge(ip: Enum.reject([ip, ip6], &is_nil/1))

    PodDist.SimCase.create_pod(cluster.sim, "default", name, pod_opts)
    ip
  end

  @doc "Starts node `basename@pod` inside the pod's namespace. Options as `PodDist.Test.Node.start!/4`."
  def start_node!(cluster, basename, pod, opts \\ []) do
    case start_node(cluster, basename, pod, opts) do
      {:ok, node} -> node
      {:error, reason, output} -> raise "node did not come up: #{inspect(reason)}\n#{output}"
    end
  end

  @doc "Like `start_node!/4`, but `{:error, reason, console_output}` when the node does not come up."
  def start_node(cluster, basename, pod, opts \\ []) do
    %{ns: ns, ip: ip} = Agent.get(cluster.agent, & &1.pods[pod])

    opts =
      Keyword.merge(
        [ip: ip, mode: cluster.mode, netns: ns, api_url: "https://#{@api_ip}:6443"],
        opts
      )

    with {:ok, node} <- Node.start(cluster.sim, basename, pod, opts) do
      Agent.update(cluster.agent, &Map.update!(&1, :nodes, fn nodes -> [node | nodes] end))
      {:ok, node}
    end
  end

  @doc """
  Starts `PodDist.Strategy` inside `node` (unlinked from the REPL), reaching the
  simulator the way the node's pod does, with `config` on top.
  """
  def start_strategy!(cluster, node, config \\ []) do
    base = [
      api_url: "https://#{@api_ip}:6443",
      ca_file: Path.join(cluster.sim.dir, "ca.crt"),
      token_file: Path.join(cluster.sim.dir, "serviceaccount/token"),
      namespaces: ["default"],
      reconcile_interval: 500
    ]

    code =
      "{:ok, pid} = PodDist.Strategy.start_link(#{inspect(Keyword.merge(base, config))}); Process.unlink(pid); Process.register(pid, :pod_dist_strategy); :ok"

    {:ok, :ok} = Node.eval(node, code)
    :ok
  end

  @doc "Where pods reach the simulator: `{ip, port}`."
  def api_endpoint do
    {:ok, ip} = :inet.parse_address(String.to_charlist(@api_ip))
    {ip, 6443}
  end

  @doc "A pod's IP."
  def pod_ip(cluster, pod), do: Agent.get(cluster.agent, & &1.pods[pod].ip)

  @doc "A dual-stack pod's IPv6 address (`nil` for others)."
  def pod_ip6(cluster, pod), do: Agent.get(cluster.agent, & &1.pods[pod].ip6)

  @doc "The nodes `node` is connected to, sorted."
  def connected(node) do
    {:ok, nodes} = Node.eval(node, "Enum.sort(Node.list())")
    nodes
  end

  @doc "Opens a remote shell from inside `pod` onto `node`, types `input`; returns the terminal's text."
  def remote_shell(cluster, node, pod, input) do
    %{ns: ns, ip: ip} = Agent.get(cluster.agent, & &1.pods[pod])
    opts = [ip: ip, mode: cluster.mode, netns: ns, api_url: "https://#{@api_ip}:6443"]
    Node.remote_shell(cluster.sim, node.name, pod, input, opts)
  end

  @doc "Deletes the Pod object at once (the namespace and its nodes stay, as a dying pod's would)."
  def delete_pod!(cluster, name) do
    PodDist.SimCase.delete_pod(cluster.sim, "default", name)
  end

  @doc "Removes a pod's namespace (after its nodes were stopped)."
  def remove_netns!(cluster, name) do
    # A namespace lives on while a process is in it: its epmd goes first.
    if pid = Agent.get(cluster.agent, & &1.epmds[name]), do: kill(pid)
    ip(["netns", "del", netns(cluster, name)])

    # Forgotten with its pod: stop/1 must not kill that PID again (it may be reused).
    Agent.update(cluster.agent, fn state ->
      %{state | pods: Map.delete(state.pods, name), epmds: Map.delete(state.epmds, name)}
    end)
  end

  @doc """
  Starts a long-running command inside a pod's network namespace (e.g. a release's
  `bin/app start`), with `env`; it is killed when the cluster stops. Returns its port.
  """
  def spawn_in_pod!(cluster, pod, [command | args], env \\ []) do
    port =
      Port.open({:spawn_executable, ip_path()}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        args: ["netns", "exec", netns(cluster, pod), command | args],
        env: Enum.map(env, fn {k, v} -> {String.to_charlist(k), String.to_charlist(v)} end)
      ])

    {:os_pid, pid} = Port.info(port, :os_pid)
    track(cluster, :procs, pid, pod)
    port
  end

  @doc """
  The path of a pod's network namespace, for the `{:netns, path}` socket option: a
  socket this VM opens with it lives inside the pod (e.g. a stand-in epmd).
  """
  def netns_path(cluster, pod), do: Path.join("/var/run/netns", netns(cluster, pod))

  @doc "Runs a command inside a pod's network namespace; returns `{output, exit_status}`."
  def in_pod(cluster, pod, [command | args]) do
    ip(["netns", "exec", netns(cluster, pod), command | args])
  end

  @doc "Tears everything down: nodes, epmds, the simulator, every namespace."
  def stop(cluster) do
    if Process.alive?(cluster.agent) do
      state = Agent.get(cluster.agent, & &1)
      Enum.each(state.nodes, &Node.stop/1)
      Enum.each(state.procs, fn {pid, _} -> kill(pid) end)

      Enum.each(state.epmds, fn {_, pid} -> kill(pid) end)
      Enum.each(state.sims, &Simulator.stop/1)

      for {name, _} <- state.pods do
        # What a spawned command left behind: a release's start script may run the VM as
        # its child (Elixir 1.18's does), which outlives the script's kill.
        kill_all_in(netns(cluster, name))
        ip(["netns", "del", netns(cluster, name)])
      end

      ip(["netns", "del", hub(cluster)])
      Agent.stop(cluster.agent)
    end

    :ok
  end

  @doc """
  Deletes the namespaces of earlier runs that died without `stop/1` (a killed test run):
  those named like ours whose VM is gone and in which no process runs any more.
  """
  def sweep_stale do
    {list, _} = ip(["netns", "list"])

    for line <- String.split(list, "\n", trim: true),
        [name | _] = String.split(line),
        [owner] <- [Regex.run(~r/^kd([0-9a-z]+)n[0-9a-z]+-/, name, capture: :all_but_first)],
        not File.exists?("/proc/#{String.to_integer(owner, 36)}"),
        {"", 0} == ip(["netns", "pids", name]),
        do: ip(["netns", "del", name])

    :ok
  end

  @doc "The pods the API server holds now, decoded."
  def server_pods(cluster), do: PodDist.SimCase.server_pods(cluster.sim, "default")

  defp base36(integer) when is_binary(integer), do: integer |> String.to_integer() |> base36()
  defp base36(integer), do: integer |> Integer.to_string(36) |> String.downcase()

  defp hub(cluster), do: "#{cluster.id}-hub"
  defp netns(cluster, pod), do: "#{cluster.id}-#{pod}"

  defp next_ip(cluster) do
    n =
      Agent.get_and_update(cluster.agent, fn s -> {s.next_ip, %{s | next_ip: s.next_ip + 1}} end)

    "#{@subnet}.#{n}"
  end

  defp track(cluster, key, name, value) do
    Agent.update(cluster.agent, &update_in(&1, [key], fn m -> Map.put(m, name, value) end))
  end

  defp wait_for_epmd(ns, tries \\ 50) do
    case System.cmd(ip_path(), ["netns", "exec", ns, System.find_executable("epmd"), "-names"],
           stderr_to_stdout: true
         ) do
      {_, 0} -> :ok
      _ when tries > 0 -> Process.sleep(20) && wait_for_epmd(ns, tries - 1)
      {output, _} -> raise "epmd did not start in #{ns}: #{output}"
    end
  end

  defp ip_path, do: System.find_executable("ip")

  defp kill(pid), do: System.cmd("kill", [to_string(pid)], stderr_to_stdout: true)

  defp kill_all_in(netns) do
    case ip(["netns", "pids", netns]) do
      {"", _} -> :ok
      {pids, 0} -> System.cmd("kill", ["-9" | String.split(pids)], stderr_to_stdout: true)
      _ -> :ok
    end
  end

  defp ip!(args) do
    case ip(args) do
      {_, 0} -> :ok
      {output, status} -> raise "ip #{Enum.join(args, " ")} failed (#{status}): #{output}"
    end
  end

  defp ip(args), do: System.cmd(ip_path(), args, stderr_to_stdout: true)
end
