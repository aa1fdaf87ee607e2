defmodule PodDist.ReleaseNetnsTest do
  # examples/shop, built with `mix release` as a user builds it: two copies boot as pods
  # with PodDist.Epmd from the release's vm.args and form a cluster on their own.
  use ExUnit.Case, async: false

  import PodDist.SimCase, only: [eventually: 1]

  alias PodDist.Test.{Cluster, Node}

  @moduletag :netns
  @moduletag timeout: 300_000
  @example "examples/shop"

  # A new application that depends on :pod_dist by `path:` on a directory holding exactly
  # the files of pod_dist's Hex package (`package/0` in mix.exs, listed as `mix hex.build`
  # lists them: PodDist.Test.Package), built the way a clean Docker stage builds it: no
  # priv/, no development Cargo workspace, simulator or benchmarks, an empty _build and
  # deps/, one `MIX_ENV=prod mix release`. So the product builds from what it ships, and
  # nothing it omits is needed. (A `git:` or Hex dependency takes the same way through
  # the NIF compiler.) Its cargo build shares this checkout's target dir, so dependencies
  # are not compiled again.
  setup_all do
    tmp = Path.join(System.tmp_dir!(), "pod_dist_release-#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm_rf!(tmp) end)
    package = PodDist.Test.Package.copy!(Path.join(tmp, "pod_dist"))
    app = Path.join(tmp, "shop")
    File.mkdir_p!(app)

    # The package is the product alone, and says under which license.
    assert File.exists?(Path.join(package, "LICENSE"))
    assert File.exists?(Path.join(package, "native/Cargo.lock"))
    refute File.exists?(Path.join(package, "priv"))
    refute File.exists?(Path.join(package, "Cargo.toml"))
    refute File.exists?(Path.join(package, ".cargo"))
    refute File.exists?(Path.join(package, "test"))
    refute File.exists?(Path.join(package, "native/target"))

    for entry <- ~w(mix.exs lib config rel),
        do: File.cp_r!(Path.join(@example, entry), Path.join(app, entry))

    mix_exs = Path.join(app, "mix.exs")

    File.write!(
      mix_exs,
      String.replace(File.read!(mix_exs), ~s(path: "../.."), "path: #{inspect(package)}")
    )

    mix = fn args ->
      System.cmd("mix", args,
        cd: app,
        env: [
          {"MIX_ENV", "prod"},
          {"MIX_BUILD_ROOT", nil},
          {"MIX_DEPS_PATH", nil},
          {"CARGO_TARGET_DIR", System.get_env("CARGO_TARGET_DIR", Path.expand("target"))}
        ],
        stderr_to_stdout: true
      )
    end

    {out, status} = mix.(["release"])
    assert status == 0, out
    release = Path.join(app, "_build/prod/rel/shop")
    assert [nif] = Path.wildcard(Path.join(release, "lib/pod_dist-*/priv/pod_dist_nif.so")), out
    # The test-only NIFs do not ship (see the NIF compiler in pod_dist's mix.exs).
    refute File.read!(nif) =~ "panic_watch_for_test"
    {:ok, release: release}
  end

  for mode <- [:epmdless, :epmd] do
    @tag mode: mode
    test "#{mode}: two copies of the example release join each other as pods; rpc and remote work",
         %{release: release, mode: mode} do
      cluster = Cluster.start!(mode: mode)
      bin = Path.join(release, "bin/shop")

      for pod <- ["pod-a", "pod-b"] do
        Cluster.add_pod!(cluster, pod, ports: [{"dist-shop", 4370}], labels: [app: "shop"])
        Cluster.spawn_in_pod!(cluster, pod, [bin, "start"], env(cluster, pod, mode))
      end

      # A hidden observer: its connections are not passed on, so what the releases are
      # connected to, they connected to themselves.
      Cluster.add_pod!(cluster, "pod-c", ports: [{"dist", 4370}])
      observer = Cluster.start_node!(cluster, "observer", "pod-c", extra_args: ["-hidden"])

      call = fn node, mfa -> Node.eval(observer, ":erpc.call(:#{inspect(node)}, #{mfa})") end

      eventually(fn ->
        match?({:ok, true}, Node.eval(observer, "Node.connect(:\"shop@pod-a\")"))
      end)

      # The example's vm.args uses the kernel parameter on OTP 27+, the flag before.
      if String.to_integer(System.otp_release()) >= 27 do
        assert {:ok, {:ok, PodDist.Epmd}} =
                 call.("shop@pod-a", ":application, :get_env, [:kernel, :epmd_module]")

        assert {:ok, :error} = call.("shop@pod-a", ":init, :get_argument, [:epmd_module]")
      else
        assert {:ok, {:ok, [[~c"Elixir.PodDist.Epmd"]]}} =
                 call.("shop@pod-a", ":init, :get_argument, [:epmd_module]")
      end

      assert {:ok, ^mode} = call.("shop@pod-a", "PodDist.Epmd, :mode, []")

      assert {:ok, exports} = call.("shop@pod-a", "PodDist.Native, :module_info, [:exports]")
      refute Keyword.has_key?(exports, :panic_for_test)
      eventually(fn -> call.("shop@pod-a", "Node, :list, []") == {:ok, [:"shop@pod-b"]} end)
      assert {:ok, [:"shop@pod-a"]} = call.("shop@pod-b", "Node, :list, []")

      # The release's own scripts start from remote.vm.args: they need the epmd module
      # too (in epmd-less mode there is no epmd to ask).
      env = env(cluster, "pod-a", mode)
      vars = for {key, value} <- env, do: "#{key}=#{value}"

      {out, status} =
        Cluster.in_pod(
          cluster,
          "pod-a",
          ["env" | vars] ++ [bin, "rpc", "IO.inspect(Node.list())"]
        )

      assert status == 0, out
      assert out =~ ~s([:"shop@pod-b"])

      shell =
        Node.terminal(
          [System.find_executable("ip"), "netns", "exec", "#{cluster.id}-pod-a", "env"] ++
            vars ++ [bin, "remote"],
          [],
          ~r/iex\(shop@pod-a\)\d+> /,
          "IO.puts(Enum.join(Node.list(), \",\") <> \"<-peers\")\n"
        )

      assert shell =~ "shop@pod-b<-peers"
    end
  end

  defp env(cluster, pod, mode) do
    [
      {"RELEASE_NODE", "shop@#{pod}"},
      {"RELEASE_COOKIE", "pod_dist_test"},
      {"POD_DIST_MODE", Atom.to_string(mode)},
      {"POD_DIST_NAMESPACES", "default"},
      {"POD_DIST_LABEL_SELECTOR", "app=shop"},
      {"POD_DIST_API_URL", "https://198.51.100.254:6443"},
      {"POD_DIST_CA_FILE", Path.join(cluster.sim.dir, "ca.crt")},
      {"POD_DIST_TOKEN_FILE", Path.join(cluster.sim.dir, "serviceaccount/token")}
    ]
  end
end
