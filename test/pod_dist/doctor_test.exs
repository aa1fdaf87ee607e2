defmodule PodDist.DoctorTest do
  use PodDist.SimCase, async: true

  alias PodDist.{Doctor, Simulator}
  alias PodDist.Doctor.Checks

  defp config(sim, extra),
    do: Simulator.watch_options(sim) ++ [node_basename: "app"] ++ extra

  # Returns once the watch has failed: a subscriber hears the current error first.
  defp failed!(watch) do
    tag = PodDist.Watch.subscribe(watch)
    assert_receive {:pod_dist, ^tag, {:api_error, _}}, 10_000
  end

  defp find(checks, name), do: Enum.find(checks, &(&1.name == name)) || flunk("no #{name} check")

  test "passes the API checks and says why each pod is not eligible", %{sim: sim} do
    create_pod(sim, "default", "api-0", ip: "198.51.100.1")
    create_pod(sim, "default", "api-1", ip: "198.51.100.2", ready: false)
    create_pod(sim, "default", "api-2")

    checks = Doctor.run(config(sim, namespaces: ["default"]))

    api = find(checks, "API server")
    assert api.status == :ok
    assert api.detail =~ "#{sim.url}"
    assert api.detail =~ "explicit credentials, TLS verified, 3 pods"
    assert find(checks, ~s(RBAC in "default")).status == :ok
    # A watch that never died says nothing about restarts.
    refute Enum.any?(checks, &(&1.name == "watch"))

    pods = find(checks, "pods")
    assert pods.detail =~ "3 seen, 1 eligible"
    assert pods.detail =~ "api-1: not Ready"
    assert pods.detail =~ "api-2: no IP yet"
    # This test VM is no pod of the simulator, and it is not distributed.
    assert find(checks, "own pod").status == :warn
    assert find(checks, "distribution").status == :fail
    assert Doctor.format(checks) =~ ~r/\[FAIL\] distribution: .*\n +fix: start it with a name/
  end

  test "a 403 names the namespace and prints the Role to apply", %{sim: sim} do
    fault!(sim, "rbac", namespaces: "default")
    checks = Doctor.run(config(sim, namespaces: ["default", "prod"]))

    assert %{status: :fail, fix: "grant access to pods" <> _} = find(checks, "API server")
    assert find(checks, ~s(RBAC in "default")).status == :ok
    prod = find(checks, ~s(RBAC in "prod"))
    assert prod.status == :fail
    assert prod.detail =~ "403 Forbidden"
    assert prod.fix =~ "kind: Role\nmetadata:\n  name: pod-dist\n  namespace: prod"
    assert prod.fix =~ ~s(verbs: ["get", "list", "watch"])
    assert prod.fix =~ "name: pod-dist\n    namespace: default"
  end

  test "the watch's health says what failed as a term, and whom to grant access", %{sim: sim} do
    fault!(sim, "rbac", namespaces: "default")
    options = Keyword.put(PodDist.Simulator.watch_options(sim), :namespaces, ["prod"])
    {:ok, watch} = PodDist.Watch.start(options)
    failed!(watch)

    assert %{error: :forbidden, service_account: {"default", "pod-dist"}} =
             PodDist.Watch.health(watch)

    options = Keyword.put(options, :api_url, "https://127.0.0.1:1")
    {:ok, watch} = PodDist.Watch.start(options)
    failed!(watch)
    assert %{error: :unreachable, service_account: nil} = PodDist.Watch.health(watch)
  end

  test "a throttled watch says so as a term, and the doctor points to a priority level",
       %{sim: sim} do
    fault!(sim, "faults/throttle", retry_after: 30, seconds: 60)
    {:ok, watch} = PodDist.Watch.start(PodDist.Simulator.watch_options(sim))
    failed!(watch)
    assert %{error: :throttled, last_error: message} = PodDist.Watch.health(watch)
    assert message =~ "429 Too Many Requests"
    assert message =~ "waiting 30 s (its Retry-After"

    api = find(Doctor.run(config(sim, [])), "API server")
    assert api.status == :fail
    assert api.fix =~ "Retry-After"
    assert api.fix =~ "examples/kubernetes/flowschema.yaml"
  end

  test "an unreachable API server fails with what to check", %{sim: sim} do
    config = Keyword.put(config(sim, []), :api_url, "https://127.0.0.1:1")
    api = find(Doctor.run(config), "API server")
    assert api.status == :fail
    assert api.fix =~ "reachable"
  end

  test "mix pod_dist.doctor runs the checks and exits 1 on a failure", %{sim: sim} do
    args =
      ~w(pod_dist.doctor --namespace default --api-url #{sim.url}) ++
        ~w(--ca-file #{sim.dir}/ca.crt --token-file #{sim.dir}/serviceaccount/token)

    create_pod(sim, "default", "api-0", ip: "198.51.100.1")
    {out, status} = System.cmd("mix", args, env: [{"MIX_ENV", "test"}], stderr_to_stdout: true)
    assert out =~ "[ok]   API server: #{sim.url}"
    assert out =~ "1 seen, 1 eligible"
    # Not distributed: that check fails, so the exit status says so.
    assert out =~ "[FAIL] distribution"
    assert status == 1
  end

  test "a watch that died and was restarted is reported with the reason", %{sim: sim} do
    {:ok, watch} = PodDist.Watch.start(Simulator.watch_options(sim))
    assert PodDist.Watch.await_synced(watch, 10_000)
    health = PodDist.Watch.health(watch)
    assert %{restarts: 0, last_restart: nil} = health
    assert Checks.restarts(health) == []

    reason = "the watch panicked: boom; restarting it in 800 ms"
    [check] = Checks.restarts(%{health | restarts: 2, last_restart: reason})
    assert check.name == "watch"
    assert check.status == :warn
    assert check.detail =~ "restarted 2 times; last: #{reason}"
    assert check.fix =~ "please report it"
  end
end
