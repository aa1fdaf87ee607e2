defmodule PodDist.SimCase do
  @moduledoc """
  ExUnit case template for tests against the Kubernetes API simulator: each test
  gets a fresh simulator in `context.sim`, stopped when the test ends, and helpers
  that play the kubelet through the real Pod API.
  """
  use ExUnit.CaseTemplate

  alias PodDist.Simulator
  alias PodDist.Test.JSON

  using do
    quote do
      import PodDist.SimCase
    end
  end

  # Built on first use, once per run: outside any test, whose timeout a cold build would
  # overrun (setup_all has none).
  setup_all do
    Simulator.binary()
    :ok
  end

  setup context do
    {:ok, sim} = Simulator.start(Map.get(context, :sim_options, []))
    on_exit(fn -> Simulator.stop(sim) end)
    {:ok, sim: sim}
  end

  @doc "The YAML `kubectl kustomize` builds from a directory of manifests."
  def kustomize!(dir) do
    {yaml, 0} = System.cmd("kubectl", ["kustomize", dir], stderr_to_stdout: true)
    yaml
  end

  @doc """
  Creates, in `default`, the pods `kube_sim manifest` derived from a manifest (its
  `"pods"`: one per Deployment, from its template), Running and Ready at 198.51.100.1, .2, ...
  """
  def create_manifest_pods(sim, pods) do
    for {pod, i} <- Enum.with_index(pods, 1) do
      create_pod(sim, "default", pod["metadata"]["name"],
        spec: pod["spec"],
        labels: Map.to_list(pod["metadata"]["labels"]),
        ip: "198.51.100.#{i}"
      )
    end
  end

  @doc """
  Creates a pod (one container, bound to node-1). Options: `:labels`, `:ip` (then it is
  Running, and Ready unless `ready: false`; a list: dual stack), `:hostname`, `:subdomain`,
  `:host_network` (the pod uses its node's network, so its IP is the node's), `:grace`,
  `:ports` (`[{"dist-app", 4370}]`: named container ports), `:spec` (a whole pod spec
  instead, e.g. a Deployment's template; it is bound to node-1).
  """
  def create_pod(sim, namespace, name, opts \\ []) do
    spec =
      if(opts[:spec], do: Map.put(opts[:spec], "nodeName", "node-1"), else: default_spec(opts))
      |> put_present(:hostname, opts[:hostname])
      |> put_present(:subdomain, opts[:subdomain])
      |> put_present(:hostNetwork, opts[:host_network])

    pod = %{metadata: %{name: name, labels: Map.new(Keyword.get(opts, :labels, []))}, spec: spec}

    {:ok, 201, _} = api(sim, :post, "/api/v1/namespaces/#{namespace}/pods", pod)
    if ip = opts[:ip], do: set_running(sim, namespace, name, ip, Keyword.get(opts, :ready, true))
    :ok
  end

  defp default_spec(opts) do
    %{
      nodeName: "node-1",
      terminationGracePeriodSeconds: Keyword.get(opts, :grace, 30),
      containers: [
        %{
          name: "app",
          image: "app:1",
          ports:
            for(
              {name, port} <- Keyword.get(opts, :ports, []),
              do: %{name: name, containerPort: port}
            )
        }
      ]
    }
  end

  defp put_present(map, _key, nil), do: map
  defp put_present(map, key, value), do: Map.put(map, key, value)

  @doc "Plays the kubelet: the pod is Running at `ip` (or a list of IPs), with Ready = `ready`."
  def set_running(sim, namespace, name, ip, ready \\ true) do
    ips = List.wrap(ip)

    status = %{
      phase: "Running",
      podIP: hd(ips),
      podIPs: Enum.map(ips, &%{ip: &1}),
      conditions: [%{type: "Ready", status: if(ready, do: "True", else: "False")}]
    }

    patch_status(sim, namespace, name, status)
  end

  defp patch_status(sim, namespace, name, status) do
    {:ok, 200, _} =
      api(
        sim,
        :patch,
        "/api/v1/namespaces/#{namespace}/pods/#{name}/status",
        %{status: status},
        "application/merge-patch+json"
      )

    :ok
  end

  @doc """
  Plays the kubelet evicting a pod: it is Failed (reason `Evicted`) and, as in real
  clusters until it is garbage-collected, keeps its IPs.
  """
  def evict(sim, namespace, name) do
    status = %{
      phase: "Failed",
      reason: "Evicted",
      message: "The node was low on resource: memory.",
      conditions: [%{type: "Ready", status: "False"}]
    }

    patch_status(sim, namespace, name, status)
  end

  @doc "Deletes a pod; `grace` seconds (default 0: at once)."
  def delete_pod(sim, namespace, name, grace \\ 0) do
    {:ok, 200, _} =
      api(
        sim,
        :delete,
        "/api/v1/namespaces/#{namespace}/pods/#{name}?gracePeriodSeconds=#{grace}"
      )

    :ok
  end

  @doc "The server's pods in `namespace`, as decoded JSON maps."
  def server_pods(sim, namespace) do
    {:ok, 200, body} = api(sim, :get, "/api/v1/namespaces/#{namespace}/pods")
    JSON.decode!(body)["items"]
  end

  @doc "An admin API call with a JSON body; returns `{:ok, status, body}`."
  def api(sim, method, path, body \\ nil, type \\ "application/json") do
    Simulator.request(sim, method, path, body && JSON.encode!(body), type)
  end

  @doc "Merge-patches a pod's metadata/spec as an admin."
  def patch_pod(sim, namespace, name, patch) do
    {:ok, 200, _} =
      api(
        sim,
        :patch,
        "/api/v1/namespaces/#{namespace}/pods/#{name}",
        patch,
        "application/merge-patch+json"
      )

    :ok
  end

  @doc "The simulator's counters (requests by verb and path, bytes, open watches)."
  def sim_stats(sim) do
    {:ok, 200, body} = Simulator.request(sim, :get, "/_sim/stats")
    JSON.decode!(body)
  end

  @doc "A fault or control route; see `PodDist.Simulator.fault/3`."
  def fault!(sim, route, params \\ []) do
    {:ok, 200, _} = Simulator.fault(sim, route, params)
    :ok
  end

  @doc "Starts an epmd of its own on `port` (stopped when the test exits)."
  def start_epmd!(port) do
    epmd =
      Port.open({:spawn_executable, System.find_executable("epmd")}, args: ["-port", "#{port}"])

    {:os_pid, epmd_pid} = Port.info(epmd, :os_pid)
    ExUnit.Callbacks.on_exit(fn -> System.cmd("kill", [to_string(epmd_pid)]) end)
    Process.sleep(200)
    epmd
  end

  @doc """
  pod_dist's code with an empty `priv/`: no pod_dist_nif.so where the VM looks. Returns
  the application's directory (removed when the test exits).
  """
  def lib_without_nif! do
    lib = Path.join(System.tmp_dir!(), "no-nif-#{System.unique_integer([:positive])}/pod_dist")
    File.mkdir_p!(Path.join(lib, "priv"))
    File.cp_r!(Path.join(:code.lib_dir(:pod_dist), "ebin"), Path.join(lib, "ebin"))
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf!(Path.dirname(lib)) end)
    lib
  end

  @doc "Polls `fun` every 50 ms until it returns a truthy value, up to `timeout` ms."
  def eventually(fun, timeout \\ 15_000) do
    poll(fun, System.monotonic_time(:millisecond) + timeout, timeout)
  end

  defp poll(fun, deadline, timeout) do
    cond do
      result = fun.() ->
        result

      System.monotonic_time(:millisecond) > deadline ->
        flunk("condition not met within #{timeout} ms")

      true ->
        Process.sleep(50) && poll(fun, deadline, timeout)
    end
  end

  @doc "The next `{:pod_dist, tag, event}` for `tag`."
  def next_event(tag, timeout \\ 5_000) do
    receive do
      {:pod_dist, ^tag, event} -> event
    after
      timeout -> flunk("no PodDist event within #{timeout} ms")
    end
  end
end
