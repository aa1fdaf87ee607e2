defmodule PodDist.WatchRecoveryTest do
  use PodDist.SimCase, async: true

  alias PodDist.{Simulator, Watch}

  @moduletag sim_options: [pods: 3]

  defp summary(pods) do
    pods |> Enum.map(&{&1.name, &1.uid, &1.ip, &1.ready}) |> Enum.sort()
  end

  defp server_summary(sim) do
    for pod <- server_pods(sim, "default") do
      ip =
        with ip when is_binary(ip) <- pod["status"]["podIP"],
             do: elem(:inet.parse_address(~c"#{ip}"), 1)

      ready =
        Enum.any?(
          pod["status"]["conditions"] || [],
          &(&1["type"] == "Ready" and &1["status"] == "True")
        )

      {pod["metadata"]["name"], pod["metadata"]["uid"], ip, ready}
    end
    |> Enum.sort()
  end

  # Synced, subscribed, and its watch request open (it follows the list): faults that
  # act on open watches (offline, garbage, cuts) then always meet it.
  defp started(sim) do
    {:ok, watch} = Watch.start(Simulator.watch_options(sim))
    assert Watch.await_synced(watch, 10_000)
    tag = Watch.subscribe(watch)
    eventually(fn -> sim_stats(sim)["open_watches"] >= 1 end)
    {watch, tag}
  end

  test "two users of the same options share one watch", %{sim: sim} do
    {first, tag1} = started(sim)
    {second, tag2} = started(sim)
    # One streaming list (a single watch request) serves both.
    eventually(fn -> sim_stats(sim)["open_watches"] == 1 end)
    stats = sim_stats(sim)
    assert stats["requests"]["WATCH /api/v1/namespaces/{namespace}/pods"] == 1
    assert stats["streamed_reads"] == 1
    refute Map.has_key?(stats["requests"], "LIST /api/v1/namespaces/{namespace}/pods")

    create_pod(sim, "default", "shared")
    assert {:added, %{name: "shared"}} = next_event(tag1)
    assert {:added, %{name: "shared"}} = next_event(tag2)
    assert Watch.health(first) == Watch.health(second)
  end

  test "after a forced 410 the watch re-lists, reporting only real changes", %{sim: sim} do
    {watch, tag} = started(sim)
    create_pod(sim, "default", "before", ip: "198.51.100.9")
    assert {:added, _} = next_event(tag)
    assert {:changed, _, _} = next_event(tag)

    fault!(sim, "faults/compact")
    fault!(sim, "faults/cut-watches", expired: true)
    delete_pod(sim, "default", "pod-1")

    assert {:deleted, %{name: "pod-1"}} = next_event(tag, 15_000)
    assert :synced = next_event(tag, 15_000)
    refute_receive {:pod_dist, ^tag, _}, 300
    assert summary(Watch.pods(watch)) == server_summary(sim)
  end

  test "the index catches up with what changed while the API was offline", %{sim: sim} do
    {watch, tag} = started(sim)
    fault!(sim, "faults/offline", seconds: 3)
    assert {:api_error, message} = next_event(tag, 10_000)
    assert message =~ ~s(pods in namespace "default": cannot reach the API server)
    # The control port keeps working: the cluster changes while the watch cannot see it.
    delete_pod(sim, "default", "pod-2")
    create_pod(sim, "default", "born-offline", ip: "198.51.100.20")

    assert Enum.map(Watch.pods(watch), & &1.name) == ["pod-0", "pod-1", "pod-2"],
           "the index is kept"

    eventually(fn -> summary(Watch.pods(watch)) == server_summary(sim) end)
    events = drain(tag)
    assert {:deleted, "pod-2"} in events
    assert {:added, "born-offline"} in events

    refute Enum.any?(events, &match?({:api_error, _}, &1)),
           "one error per outage: #{inspect(events)}"

    assert %{synced: true, last_error: nil} = Watch.health(watch)
  end

  test "403 surfaces as an :api_error naming the missing permission; the index is kept", %{
    sim: sim
  } do
    {watch, tag} = started(sim)
    fault!(sim, "rbac", namespaces: "elsewhere")
    fault!(sim, "faults/cut-watches")
    assert {:api_error, message} = next_event(tag, 15_000)
    assert message =~ "403 Forbidden"
    assert message =~ ~r/cannot (watch|list) resource "pods"/
    assert message =~ "grant get, list and watch on pods"
    assert length(Watch.pods(watch)) == 3

    fault!(sim, "rbac", namespaces: "*")
    create_pod(sim, "default", "after-the-fix")
    assert {:added, "after-the-fix"} in drain_until(tag, {:added, "after-the-fix"}, 40_000)
    # Recovered: neither the message nor its kind is current any more.
    assert %{last_error: nil, error: nil} = Watch.health(watch)
  end

  test "a malformed watch event is reported and the watch resyncs", %{sim: sim} do
    {watch, tag} = started(sim)
    fault!(sim, "faults/malformed")
    assert {:api_error, message} = next_event(tag, 10_000)
    assert message =~ "pods in namespace"
    delete_pod(sim, "default", "pod-0")
    create_pod(sim, "default", "after-garbage", ip: "198.51.100.30")
    eventually(fn -> summary(Watch.pods(watch)) == server_summary(sim) end)
  end

  test "a rotated service-account token is picked up without a restart", %{sim: sim} do
    {watch, tag} = started(sim)
    fault!(sim, "faults/rotate-token")
    fault!(sim, "faults/cut-watches")
    assert {:api_error, message} = next_event(tag, 10_000)
    assert message =~ "401 Unauthorized"

    create_pod(sim, "default", "after-rotation")
    assert {:added, "after-rotation"} in drain_until(tag, {:added, "after-rotation"}, 15_000)
    assert %{last_error: nil} = Watch.health(watch)
  end

  # Messages received so far for `tag`, as {kind, name} (errors keep their text).
  defp drain(tag), do: drain_until(tag, nil, 0)

  defp drain_until(tag, wanted, timeout) do
    receive do
      {:pod_dist, ^tag, event} ->
        event = compact(event)
        if event == wanted, do: [event], else: [event | drain_until(tag, wanted, timeout)]
    after
      timeout -> []
    end
  end

  defp compact({:changed, _, new}), do: {:changed, new.name}
  defp compact({kind, %{name: name}}), do: {kind, name}
  defp compact(other), do: other
end
