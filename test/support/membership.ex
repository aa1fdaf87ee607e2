defmodule PodDist.Test.Membership do
  @moduledoc """
  What the membership tests and the soak observe in real nodes: every nodedown with its
  reason, the mesh, `global`'s view of a registered name; and the day-2 operations they
  drive through the simulator's API (a headless Service deleted and re-created, a
  label flipped, a pod evicted).
  """

  import PodDist.SimCase, only: [api: 4, api: 5, patch_pod: 4]

  alias PodDist.Test.{Cluster, Node}

  @doc "Starts recording, in `node`, every nodedown from now on, with net_kernel's reason and when."
  def record_nodedowns!(node) do
    code = """
    pid = spawn(fn ->
      :net_kernel.monitor_nodes(true, [{:node_type, :all}, :nodedown_reason])
      loop = fn loop, downs ->
        receive do
          {:nodedown, node, info} ->
            down = {node, info[:nodedown_reason], System.os_time(:millisecond)}
            loop.(loop, [down | downs])

          {:downs, from} -> send(from, {:downs, Enum.reverse(downs)}) && loop.(loop, downs)
          _ -> loop.(loop, downs)
        end
      end
      loop.(loop, [])
    end)
    Process.register(pid, :membership_nodedowns)
    """

    {:ok, true} = Node.eval(node, code)
    :ok
  end

  @doc """
  The nodedowns `node` saw since `record_nodedowns!/1`, in order:
  `[{node, reason, os_time_ms}]`.
  """
  def nodedowns(node) do
    {:ok, downs} =
      Node.eval(node, """
      send(:membership_nodedowns, {:downs, self()})
      receive do {:downs, downs} -> downs after 5_000 -> :no_answer end
      """)

    downs
  end

  @doc "Whether `nodes` are fully connected to each other (and to no one else)."
  def mesh?(nodes) do
    names = Enum.map(nodes, & &1.name)
    Enum.all?(nodes, fn n -> Cluster.connected(n) == Enum.sort(names -- [n.name]) end)
  end

  @doc """
  Registers `name` with `global` in `node` (a process that lives on), then returns
  whether every node in `nodes` resolves it to that process within `timeout` ms.
  """
  def global_sees?(node, nodes, name, timeout \\ 5_000) do
    {:ok, pid} =
      Node.eval(node, """
      pid = spawn(fn -> Process.sleep(:infinity) end)
      :yes = :global.register_name(#{inspect(name)}, pid)
      pid
      """)

    deadline = System.monotonic_time(:millisecond) + timeout
    Enum.all?(nodes, &sees?(&1, name, pid, deadline))
  end

  defp sees?(node, name, pid, deadline) do
    cond do
      Node.eval(node, ":global.whereis_name(#{inspect(name)})") == {:ok, pid} -> true
      System.monotonic_time(:millisecond) > deadline -> false
      true -> Process.sleep(50) && sees?(node, name, pid, deadline)
    end
  end

  @doc "A headless Service `name` selecting `app=<app>` pods, publishing not-ready addresses."
  def create_service!(sim, name, app, ports \\ [{"epmd", 4369}]) do
    service = %{
      metadata: %{name: name},
      spec: %{
        clusterIP: "None",
        publishNotReadyAddresses: true,
        selector: %{app: app},
        ports: for({port_name, port} <- ports, do: %{name: port_name, port: port})
      }
    }

    {:ok, 201, _} = api(sim, :post, "/api/v1/namespaces/default/services", service)
    :ok
  end

  @doc "Deletes the Service `name` (its EndpointSlices go with it)."
  def delete_service!(sim, name) do
    {:ok, 200, _} = api(sim, :delete, "/api/v1/namespaces/default/services/#{name}", nil)
    :ok
  end

  @doc "The number of EndpointSlices in `default`."
  def slice_count(sim) do
    {:ok, 200, body} =
      api(sim, :get, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", nil)

    length(PodDist.Test.JSON.decode!(body)["items"])
  end

  @doc "Sets (`value`) or removes (`nil`) a pod's label `key`."
  def label!(sim, pod, key, value),
    do: patch_pod(sim, "default", pod, %{metadata: %{labels: %{key => value}}})

  @doc "Merge-patches a Service's spec (e.g. its selector)."
  def patch_service!(sim, name, spec) do
    {:ok, 200, _} =
      api(
        sim,
        :patch,
        "/api/v1/namespaces/default/services/#{name}",
        %{spec: spec},
        "application/merge-patch+json"
      )

    :ok
  end

  @doc """
  The peers `node` is connected to, each with the IP its connection really goes to:
  `%{peer => "ip"}`.
  """
  def peer_ips(node) do
    {:ok, ips} =
      Node.eval(node, """
      for peer <- Node.list(), into: %{} do
        ip =
          with {:ok, info} <- :net_kernel.node_info(peer),
               {:net_address, {ip, _port}, _, _, _} <- info[:address],
               do: ip |> :inet.ntoa() |> to_string(),
               else: (_ -> nil)

        {peer, ip}
      end
      """)

    ips
  end
end
