defmodule Mix.Tasks.KubeDist.Demo do
  @shortdoc "Runs KubeDist against a simulated Kubernetes cluster"
  @moduledoc """
  Starts the Kubernetes API simulator with a few pods, watches them through the
  native pod index, then changes the cluster and prints what the watch reports and
  how long each change took to arrive.

      mix kube_dist.demo

  Everything runs on this machine; the simulated pods have loopback addresses.
  """
  use Mix.Task

  @namespace "default"

  @impl true
  def run(_args) do
    Mix.Task.run("compile")
    {:ok, sim} = KubeDist.Simulator.start(pods: 4, namespace: @namespace)

    try do
      demo(sim)
    after
      KubeDist.Simulator.stop(sim)
    end
  end

  defp demo(sim) do
    say("Simulator at #{sim.url}; starting a watch as its service account")
    {:ok, watch} = KubeDist.Watch.start(KubeDist.Simulator.watch_options(sim))
    true = KubeDist.Watch.await_synced(watch, 10_000)
    print_pods(KubeDist.Watch.pods(watch))

    tag = KubeDist.Watch.subscribe(watch)

    step(
      sim,
      tag,
      "create pod api-0",
      :post,
      "/api/v1/namespaces/#{@namespace}/pods",
      pod_json("api-0")
    )

    step(
      sim,
      tag,
      "kubelet marks api-0 Running and Ready",
      :patch,
      "/api/v1/namespaces/#{@namespace}/pods/api-0/status",
      ~s({"status":{"phase":"Running","podIP":"127.0.9.1","podIPs":[{"ip":"127.0.9.1"}],) <>
        ~s("conditions":[{"type":"Ready","status":"True"}]}}),
      "application/merge-patch+json"
    )

    step(
      sim,
      tag,
      "delete pod-1 at once",
      :delete,
      "/api/v1/namespaces/#{@namespace}/pods/pod-1?gracePeriodSeconds=0"
    )

    print_pods(KubeDist.Watch.pods(watch))
    say("Watch health: #{inspect(KubeDist.Watch.health(watch))}")
  end

  defp step(sim, tag, title, method, path, body \\ nil, type \\ "application/json") do
    started = System.monotonic_time(:microsecond)
    {:ok, status, _} = KubeDist.Simulator.request(sim, method, path, body, type)
    event = await_pod_event(tag)
    ms = (System.monotonic_time(:microsecond) - started) / 1000

    say(
      "#{title} -> HTTP #{status}; watch reported #{describe(event)} after #{Float.round(ms, 1)} ms"
    )
  end

  defp await_pod_event(tag) do
    receive do
      {:kube_dist, ^tag, {kind, _} = event} when kind in [:added, :deleted] -> event
      {:kube_dist, ^tag, {:changed, _, _} = event} -> event
    after
      10_000 -> :timeout
    end
  end

  defp describe({:added, pod}), do: "ADDED #{pod.name}"
  defp describe({:deleted, pod}), do: "DELETED #{pod.name}"

  defp describe({:changed, _old, new}),
    do: "CHANGED #{new.name} (#{new.phase}, ready=#{new.ready})"

  defp describe(:timeout), do: "nothing (timeout)"

  defp pod_json(name) do
    ~s({"metadata":{"name":"#{name}","labels":{"app":"api"}},) <>
      ~s("spec":{"nodeName":"node-1","containers":[{"name":"app","image":"demo:1"}]}})
  end

  defp print_pods(pods) do
    say("\n  NAMESPACE  NAME       IP            PHASE     READY")

    for pod <- pods do
      ip = if pod.ip, do: pod.ip |> :inet.ntoa() |> to_string(), else: "-"

      say(
        "  #{String.pad_trailing(pod.namespace, 10)} #{String.pad_trailing(pod.name, 10)} " <>
          "#{String.pad_trailing(ip, 13)} #{String.pad_trailing(to_string(pod.phase), 9)} #{pod.ready}"
      )
    end

    say("")
  end

  defp say(line), do: Mix.shell().info(line)
end
