defmodule KubeDist.SimCase do
  @moduledoc """
  ExUnit case template for tests against the Kubernetes API simulator: each test
  gets a fresh simulator in `context.sim`, stopped when the test ends, and helpers
  that play the kubelet through the real Pod API.
  """
  use ExUnit.CaseTemplate

  alias KubeDist.Simulator
  alias KubeDist.Test.JSON

  using do
    quote do
      import KubeDist.SimCase
    end
  end

  setup context do
    {:ok, sim} = Simulator.start(Map.get(context, :sim_options, []))
    on_exit(fn -> Simulator.stop(sim) end)
    {:ok, sim: sim}
  end

  @doc "Creates a pod (one container, bound to node-1); `opts`: `:labels`, `:ip`, `:ready`."
  def create_pod(sim, namespace, name, opts \\ []) do
    pod = %{
      metadata: %{name: name, labels: Map.new(Keyword.get(opts, :labels, []))},
      spec: %{
        nodeName: "node-1",
        terminationGracePeriodSeconds: Keyword.get(opts, :grace, 30),
        containers: [%{name: "app", image: "app:1"}]
      }
    }

    {:ok, 201, _} = api(sim, :post, "/api/v1/namespaces/#{namespace}/pods", pod)
    if ip = opts[:ip], do: set_running(sim, namespace, name, ip, Keyword.get(opts, :ready, true))
    :ok
  end

  @doc "Plays the kubelet: the pod is Running at `ip`, with Ready = `ready`."
  def set_running(sim, namespace, name, ip, ready \\ true) do
    status = %{
      phase: "Running",
      podIP: ip,
      podIPs: [%{ip: ip}],
      conditions: [%{type: "Ready", status: if(ready, do: "True", else: "False")}]
    }

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

  @doc "Waits for the next `{:kube_dist, tag, event}` matching `pattern`-like `fun`."
  def next_event(tag, timeout \\ 5_000) do
    receive do
      {:kube_dist, ^tag, event} -> event
    after
      timeout -> flunk("no KubeDist event within #{timeout} ms")
    end
  end
end
