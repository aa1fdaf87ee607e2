defmodule Mix.Tasks.Compile.KubeDistNif do
  @moduledoc """
  Builds the KubeDist NIF with cargo and copies it into `priv/`.

  hex.pm's `rustler` and `elixir_make` packages are not needed: this compiler runs
  `cargo build --release --locked -p kube_dist_nif` in the project root, so an
  application that lists `:kube_dist` as a dependency gets the same build.
  Set `KUBE_DIST_CARGO` to use another cargo binary.

  In `MIX_ENV=test` (kube_dist's own test builds: a dependency is compiled in its own
  environment, `:prod` unless the parent says otherwise) it adds `--features test-hooks`,
  the NIFs only tests call; `KubeDist.Native` defines their stubs under the same
  condition. `scripts/test-otp27` runs the same cargo command: keep them in step.
  """
  use Mix.Task.Compiler

  @library "libkube_dist_nif.so"
  @target "kube_dist_nif.so"

  @impl true
  def run(_args) do
    root = Path.dirname(__ENV__.file)
    cargo = System.get_env("KUBE_DIST_CARGO", "cargo")

    unless System.find_executable(cargo) do
      Mix.raise(
        "kube_dist needs Rust's cargo (Rust >= 1.91) to build its NIF; none found on PATH"
      )
    end

    args = ["build", "--release", "--locked", "-p", "kube_dist_nif"] ++ features(Mix.env())

    case System.cmd(cargo, args, cd: root, stderr_to_stdout: true, into: IO.stream(:stdio, :line)) do
      {_, 0} -> install(root)
      {_, status} -> Mix.raise("cargo #{Enum.join(args, " ")} failed with exit status #{status}")
    end
  end

  defp features(:test), do: ["--features", "test-hooks"]
  defp features(_), do: []

  defp install(root) do
    built = Path.join([cargo_target_dir(root), "release", @library])
    priv = Path.join(root, "priv")
    File.mkdir_p!(priv)
    dest = Path.join(priv, @target)

    # Copy only when it changed, so an unchanged build does not force a reload.
    result =
      if File.read(built) != File.read(dest) do
        # Write aside and rename: a running VM that has the old file mapped keeps it.
        File.cp!(built, dest <> ".tmp")
        File.rename!(dest <> ".tmp", dest)
        {:ok, []}
      else
        {:noop, []}
      end

    link_priv()
    result
  end

  # Mix links _build/ENV/lib/kube_dist/priv to priv/ before the compilers run, and only
  # if priv/ existed then: on a first build (a fresh clone, a clean Docker stage) it did
  # not, and :code.priv_dir/1 would point nowhere until the next `mix compile`. Laying
  # out the build structure again now links it.
  defp link_priv do
    config = Mix.Project.config()
    linked = Path.join(Mix.Project.app_path(config), "priv")
    unless File.exists?(linked), do: Mix.Project.build_structure(config)
  end

  defp cargo_target_dir(root), do: System.get_env("CARGO_TARGET_DIR", Path.join(root, "target"))
end

defmodule KubeDist.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :kube_dist,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:kube_dist_nif | Mix.compilers()],
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      preferred_cli_env: ["kube_dist.demo": :test],
      # :telemetry is optional at runtime.
      xref: [exclude: [:telemetry]],
      description:
        "Erlang distribution on Kubernetes: pod-name node names, a watch-driven libcluster strategy, epmd-less mode.",
      package: [
        licenses: ["Apache-2.0"],
        # bench and test/kube_sim (the simulator) are members of the Cargo workspace:
        # cargo needs their manifests and sources to build the NIF.
        files: ~w(lib native bench test/kube_sim Cargo.toml Cargo.lock mix.exs README.md)
      ]
    ]
  end

  def application do
    [extra_applications: [:logger | tooling_applications(Mix.env())]]
  end

  # The demo runs real nodes through the multi-pod test harness: both live in :test, and
  # only there. (A project depending on kube_dist compiles it in :prod.)
  defp elixirc_paths(:test), do: ["lib", "test/support", "demo"]
  defp elixirc_paths(_), do: ["lib"]

  # The harness drives the simulator with :httpc, which needs :ssl's modules even for
  # plain HTTP (it computes TLS defaults on every request since OTP 26). Declared, because
  # since Elixir 1.15 Mix prunes the code path to the applications a project declares.
  defp tooling_applications(:test), do: [:inets, :ssl]
  defp tooling_applications(_), do: []
end
