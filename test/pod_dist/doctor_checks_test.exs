defmodule PodDist.DoctorChecksTest do
  # The doctor's judgement alone: observations in, checks out. No watch, no NIF, no node.
  use ExUnit.Case, async: true

  alias PodDist.Doctor
  alias PodDist.Doctor.{Checks, Role}

  # What `PodDist.Strategy.Config.validate/1` gives for the rule the checks read.
  @config [eligible: :ready, keep_terminating: false, version_label: nil, node_basename: "app"]

  defp pod(name, fields \\ []) do
    Map.merge(
      %{
        uid: "uid-#{name}",
        namespace: "prod",
        name: name,
        ip: {198, 51, 100, 1},
        phase: :running,
        ready: true,
        terminating: false,
        labels: %{}
      },
      Map.new(fields)
    )
  end

  defp health(fields) do
    Map.merge(
      %{
        api_url: "https://10.96.0.1:443",
        credentials: "in_cluster",
        pods: 0,
        last_error: nil,
        error: nil,
        service_account: nil,
        namespaces: ["prod"],
        restarts: 0,
        last_restart: nil
      },
      Map.new(fields)
    )
  end

  test "a 403 in one namespace fails its RBAC check with the Role for the account the API named" do
    denied =
      health(
        error: :forbidden,
        last_error: ~s(pods in namespace "prod": 403 Forbidden: ...),
        service_account: {"shop", "api"}
      )

    check = Checks.rbac(~s("prod"), "prod", {:failed, denied}, @config)
    assert %{name: ~s(RBAC in "prod"), status: :fail, detail: "pods in namespace" <> _} = check
    assert check.fix == Role.yaml("prod", {"shop", "api"}, nil)
    assert check.fix =~ "kind: Role\nmetadata:\n  name: pod-dist\n  namespace: prod"
    assert check.fix =~ ~s(resources: ["pods"])
    assert check.fix =~ "name: api\n    namespace: shop"

    # Another failure is no RBAC problem: no Role is offered.
    down = health(error: :unreachable, last_error: "cannot reach the API server")
    assert %{status: :fail, fix: nil} = Checks.rbac(~s("prod"), "prod", {:failed, down}, @config)

    assert %{status: :ok, detail: "get, list and watch on endpointslices allowed"} =
             Checks.rbac(~s("prod"), "prod", :ok, @config ++ [service: "shop-dist"])
  end

  test "the Role grants slices for the slice source, and a ClusterRole for every namespace" do
    slices = Role.yaml("prod", nil, "shop-dist")
    assert slices =~ ~s(apiGroups: ["discovery.k8s.io"]\n    resources: ["endpointslices"])
    # No account named: the namespace's default one.
    assert slices =~ "name: default\n    namespace: prod"

    all = Role.yaml(nil, {"shop", "api"}, nil)
    assert all =~ "kind: ClusterRole\nmetadata:\n  name: pod-dist\nrules:"
    assert all =~ "kind: ClusterRoleBinding"
    refute all =~ "namespace: nil"
  end

  test "each namespace's access is checked on its own, or all at once" do
    assert Checks.access_scopes(health(namespaces: ["a", "b"])) ==
             [{~s("a"), "a", ["a"]}, {~s("b"), "b", ["b"]}]

    assert Checks.access_scopes(health(namespaces: :all)) == [{"all namespaces", nil, :all}]
  end

  test "the API check says what to fix for each kind of failure" do
    assert %{status: :ok, detail: "https://10.96.0.1:443, in_cluster credentials" <> _} =
             Checks.api(health(pods: 3), true, 5_000)

    fix = fn fields -> Checks.api(health(fields), false, 5_000).fix end
    assert fix.(error: :forbidden) == "grant access to pods: see the RBAC lines below"

    assert fix.(error: :forbidden, source: {:service, "shop-dist"}) =~
             "grant access to endpointslices"

    assert fix.(error: :throttled) =~ "examples/kubernetes/flowschema.yaml"
    assert fix.(error: :unauthorized) =~ "token was rejected"

    assert Checks.api(health(api_url: nil), false, 5_000).detail ==
             "?: no answer within 5000 ms"
  end

  test "pods are eligible by the strategy's own rule, and the ones that are not say why" do
    pods = [
      pod("api-0"),
      pod("api-1", ready: false),
      pod("api-2", ip: nil),
      pod("api-3", terminating: true)
    ]

    check = Checks.pods(pods, @config, nil)
    assert check.status == :ok

    assert check.detail ==
             "4 seen, 1 eligible\n  api-1: not Ready\n  api-2: no IP yet\n  api-3: terminating"

    assert Checks.pods([], @config, nil).status == :warn

    assert {[%{name: "api-0"}], 0} = Checks.candidates(pods, @config, nil)
    many = for i <- 1..25, do: pod("api-#{i}")
    assert {checked, 5} = Checks.candidates(many, @config, nil)
    assert length(checked) == 20
  end

  test "the own pod is found and eligible, or says what this node waits for" do
    assert %{status: :ok, detail: "prod/api-0 198.51.100.1, eligible"} =
             Checks.own_pod(pod("api-0"), "api-0", @config)

    assert %{status: :warn, detail: "prod/api-0 is not Ready" <> _} =
             Checks.own_pod(pod("api-0", ready: false), "api-0", @config)

    assert %{status: :warn, detail: "no watched pod is named api-9"} =
             Checks.own_pod(nil, "api-9", @config)
  end

  test "each node is judged from how it answered, and this node is not checked" do
    pod = pod("api-0")
    ip = {198, 51, 100, 1}

    checks =
      Checks.nodes(
        [
          {pod,
           [
             {:"app@api-0", :self},
             {:"a@api-0", {:ok, ip, 4370, true}},
             {:"b@api-0", {:ok, ip, 4371, false}},
             {:"c@api-0", {:error, {:resolve, "api-0"}, {:error, :nxdomain}}},
             {:"d@api-0", {:error, {:epmd, ip, "d"}, :noport}},
             {:"e@api-0", {:error, {:dist_port, ip, 4372}, :econnrefused}}
           ]},
          {pod("api-1"), []}
        ],
        3
      )

    assert [a, b, c, d, e, unnamed, more] = checks

    assert a == %{
             name: "node a@api-0",
             status: :ok,
             detail: "api-0 -> 198.51.100.1, port 4370 answers, connected",
             fix: nil
           }

    assert %{
             status: :warn,
             detail: "api-0 -> 198.51.100.1, port 4371 answers, not connected" <> _
           } = b

    assert %{
             status: :fail,
             detail: "resolve api-0: {:error, :nxdomain}",
             fix: "the host is no watched pod" <> _
           } = c

    assert %{status: :fail, detail: "epmd at 198.51.100.1 (port 4369) for d: :noport"} = d
    assert %{status: :fail, detail: "distribution port 198.51.100.1:4372: :econnrefused"} = e

    assert %{name: "node in api-1", status: :warn, detail: "no node name known for this pod"} =
             unnamed

    assert %{name: "nodes", status: :ok, detail: "3 more eligible pods not checked"} = more

    assert [%{name: "nodes", status: :warn}] = Checks.nodes(nil, 0)
  end

  test "distribution, the epmd module and the NIF, and how they print" do
    checks = [
      Checks.distribution(%{node: :"app@api-0", longnames: false}),
      Checks.distribution(nil),
      Checks.epmd_module(%{module: PodDist.Epmd, problem: nil, mode: :epmd}),
      Checks.epmd_module(%{module: :erl_epmd, problem: nil, mode: :epmd}),
      Checks.nif(%{detail: "priv/pod_dist_nif.so: not found", fix: "build it"})
    ]

    assert Doctor.format(checks) == """
           [ok]   distribution: app@api-0, short names
           [FAIL] distribution: this node is not distributed
                  fix: start it with a name: `-sname app` in vm.args (or RELEASE_DISTRIBUTION=sname in rel/env.sh.eex)
           [ok]   epmd module: PodDist.Epmd, epmd mode
           [warn] epmd module: :erl_epmd: pod names as node hosts will not resolve from other pods
                  fix: add `-epmd_module Elixir.PodDist.Epmd` to vm.args, or name nodes by IP (host: :ip)
           [FAIL] NIF: priv/pod_dist_nif.so: not found
                  fix: build it
           """
  end
end
