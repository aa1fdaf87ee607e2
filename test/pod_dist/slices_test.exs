defmodule PodDist.SlicesTest do
  # The slice source through the NIF: options, a Role without pods, and a denial.
  use PodDist.SimCase, async: true

  alias PodDist.{Simulator, Watch}
  alias PodDist.Strategy.Config

  @service %{
    metadata: %{name: "shop-dist"},
    spec: %{
      clusterIP: "None",
      publishNotReadyAddresses: true,
      selector: %{app: "shop"},
      ports: [%{name: "dist", port: 4370, targetPort: "dist"}]
    }
  }

  defp create_service(sim) do
    {:ok, 201, _} = api(sim, :post, "/api/v1/namespaces/default/services", @service)
  end

  defp only_slices(sim) do
    {:ok, 200, _} =
      Simulator.fault(sim, "rbac", namespaces: "*", resources: "endpointslices.discovery.k8s.io")
  end

  defp shop_pod(sim, name, ip, ready) do
    create_pod(sim, "default", name,
      labels: [app: "shop"],
      ip: ip,
      ready: ready,
      ports: [{"dist", 4370}]
    )
  end

  defp pod(watch, name), do: Enum.find(Watch.pods(watch), &(&1.name == name))

  test "a Role granting only endpointslices follows the Service's pods", %{sim: sim} do
    only_slices(sim)
    create_service(sim)
    shop_pod(sim, "shop-0", "198.51.100.1", true)
    shop_pod(sim, "shop-1", "198.51.100.2", false)
    create_pod(sim, "default", "other", ip: "198.51.100.9")

    {:ok, watch} = Watch.start(Simulator.watch_options(sim) ++ [service: "shop-dist"])
    assert Watch.await_synced(watch, 10_000)
    eventually(fn -> pod(watch, "shop-0") && pod(watch, "shop-1") end)

    assert %{ready: true, ip: {198, 51, 100, 1}, labels: labels} = pod(watch, "shop-0")
    assert labels == %{}
    assert %{ready: false} = pod(watch, "shop-1")
    assert pod(watch, "other") == nil
    assert %{source: {:service, "shop-dist"}, errors: 0} = Watch.health(watch)

    set_running(sim, "default", "shop-1", "198.51.100.2", true)
    eventually(fn -> match?(%{ready: true}, pod(watch, "shop-1")) end)
    delete_pod(sim, "default", "shop-0", 30)
    eventually(fn -> match?(%{terminating: true}, pod(watch, "shop-0")) end)
    delete_pod(sim, "default", "shop-1", 0)
    # Let go once the slices' grace for endpoints on the move has passed.
    eventually(fn -> pod(watch, "shop-1") == nil end)
  end

  test "a slice the EndpointSlice controller did not write leaves resolution unchanged", %{
    sim: sim
  } do
    only_slices(sim)
    create_service(sim)
    shop_pod(sim, "shop-0", "198.51.100.1", true)
    {:ok, watch} = Watch.start(Simulator.watch_options(sim) ++ [service: "shop-dist"])
    assert Watch.await_synced(watch, 10_000)
    eventually(fn -> pod(watch, "shop-0") end)
    tag = Watch.subscribe(watch)

    # Named to sort first, with a new uid (applied last, it would replace the pod): one
    # unlabelled, one of another manager, pointing shop-0 at another address.
    for {name, labels} <- [
          {"aaa-unlabelled", %{}},
          {"aaa-other", %{"endpointslice.kubernetes.io/managed-by" => "someone-else"}}
        ] do
      slice = %{
        metadata: %{
          name: name,
          labels: Map.put(labels, "kubernetes.io/service-name", "shop-dist")
        },
        addressType: "IPv4",
        endpoints: [
          %{
            addresses: ["198.51.100.99"],
            targetRef: %{kind: "Pod", namespace: "default", name: "shop-0", uid: "forged"}
          }
        ],
        ports: [%{name: "dist", port: 4370, protocol: "TCP"}]
      }

      {:ok, 201, _} =
        api(sim, :post, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slice)
    end

    # A real change after them: once it is in, the forged slices were not (one watch
    # delivers in order; the index is updated before subscribers hear of it).
    shop_pod(sim, "shop-1", "198.51.100.2", true)
    assert_receive {:pod_dist, ^tag, {:added, %{name: "shop-1"}}}, 10_000
    assert {:ok, {198, 51, 100, 1}} = Watch.resolve(watch, "shop-0")
    assert %{uid: uid} = pod(watch, "shop-0")
    assert uid != "forged"
    # Not even for a moment: no subscriber heard of the forged address.
    heard = for {:pod_dist, ^tag, event} <- Process.info(self(), :messages) |> elem(1), do: event
    refute Enum.any?(heard, &(inspect(&1) =~ "198, 51, 100, 99")), inspect(heard)
  end

  test "slice_managed_by needs a slice source" do
    assert {:error, "option :slice_managed_by chooses whose EndpointSlices to read" <> _} =
             Watch.check_options(slice_managed_by: "mesh")

    assert :ok = Watch.check_options(service: "shop-dist", slice_managed_by: "mesh")
  end

  test "a Role without endpointslices is reported with what to grant", %{sim: sim} do
    create_service(sim)
    {:ok, watch} = Watch.start(Simulator.watch_options(sim) ++ [service: "shop-dist"])
    eventually(fn -> Watch.health(watch).error == :forbidden end)
    %{last_error: message, synced: false} = Watch.health(watch)
    assert message =~ ~s(endpointslices of service "shop-dist" in namespace "default": 403)
    assert message =~ "grant get, list and watch on endpointslices (API group discovery.k8s.io)"
  end

  test "the pods source is the default and says so", %{sim: sim} do
    {:ok, watch} = Watch.start(Simulator.watch_options(sim))
    assert Watch.await_synced(watch, 10_000)
    assert %{source: :pods} = Watch.health(watch)
  end

  test "pod selectors and several namespaces are refused with a slice source" do
    assert {:error, "option :label_selector selects pods and needs the pods source" <> _} =
             Watch.check_options(service: "shop-dist", label_selector: "app=shop")

    assert {:error, "option :field_selector selects pods" <> _} =
             Watch.check_options(service: "shop-dist", field_selector: "x=y")

    assert {:error, "option :service watches one namespace" <> _} =
             Watch.check_options(service: "shop-dist", namespaces: ["a", "b"])

    assert {:error, "option :service must be a string, got 1"} = Watch.check_options(service: 1)

    assert :ok = Watch.check_options(service: "shop-dist", namespaces: ["a"])
  end

  test "the strategy refuses naming by label or annotation and version_label with slices" do
    for {key, value} <- [
          nodes: {:label, "app"},
          nodes: {:annotation, "pod-dist/nodes"},
          version_label: "version"
        ] do
      assert {:error, message} = Config.validate([{:service, "shop-dist"}, {key, value}])
      assert message =~ "PodDist.Strategy config #{inspect(key)}"
      assert message =~ "which only the pods source has"
      # Fine from pods.
      assert {:ok, _} = Config.validate([{key, value}])
    end

    assert {:ok, config} = Config.validate(service: "shop-dist", nodes: {:basename, "app"})
    assert Config.watch_options(config) == [service: "shop-dist"]
  end
end

defmodule PodDist.SlicesEnvTest do
  # Sets a global environment variable: not alongside other tests.
  use ExUnit.Case, async: false

  test "PodDist.Epmd reads POD_DIST_SERVICE" do
    System.put_env("POD_DIST_SERVICE", "shop-dist")

    try do
      assert PodDist.Epmd.watch_options()[:service] == "shop-dist"
    after
      System.delete_env("POD_DIST_SERVICE")
    end
  end
end

defmodule PodDist.SlicesDoctorTest do
  # The doctor with the slice source: the Service's slices, and their RBAC.
  use PodDist.SimCase, async: true

  alias PodDist.{Doctor, Simulator}

  defp config(sim),
    do: Simulator.watch_options(sim) ++ [node_basename: "app", service: "shop-dist"]

  defp find(checks, name), do: Enum.find(checks, &(&1.name == name)) || flunk("no #{name} check")

  test "without access to endpointslices: the Role to apply grants them", %{sim: sim} do
    checks = Doctor.run(config(sim))

    assert %{status: :fail, fix: "grant access to endpointslices" <> _} =
             find(checks, "API server")

    rbac = find(checks, ~s(RBAC in "default"))
    assert rbac.status == :fail
    assert rbac.detail =~ ~s(endpointslices of service "shop-dist")
    assert rbac.fix =~ ~s(apiGroups: ["discovery.k8s.io"]\n    resources: ["endpointslices"])
  end

  test "no slice names a pod (no Service, no selector): says what to check", %{sim: sim} do
    {:ok, 200, _} =
      Simulator.fault(sim, "rbac", namespaces: "*", resources: "endpointslices.discovery.k8s.io")

    checks = Doctor.run(config(sim))

    assert find(checks, ~s(RBAC in "default")).detail ==
             "get, list and watch on endpointslices allowed"

    service = find(checks, "service shop-dist")
    assert service.status == :fail
    assert service.fix =~ "has a selector"

    # A Service with a selector and a pod: the check passes.
    {:ok, 201, _} =
      api(sim, :post, "/api/v1/namespaces/default/services", %{
        metadata: %{name: "shop-dist"},
        spec: %{clusterIP: "None", publishNotReadyAddresses: true, selector: %{app: "shop"}}
      })

    create_pod(sim, "default", "shop-0", labels: [app: "shop"], ip: "198.51.100.1")
    eventually(fn -> find(Doctor.run(config(sim)), "service shop-dist").status == :ok end)
  end
end
