defmodule Mix.Tasks.Compile.PodDistNif do
  @moduledoc """
  Builds the PodDist NIF with cargo and copies it into `priv/`.

  hex.pm's `rustler` and `elixir_make` packages are not needed: this compiler runs
  `cargo build --release --locked -p pod_dist_nif` in `native/`, the product's own
  Cargo workspace (the engine and the NIF, with its own `Cargo.lock`), so an application
  that lists `:pod_dist` as a dependency gets the same build from the package's files
  alone. (The Cargo workspace at the project root is for development: the simulator,
  the engine's tests against it, the benchmarks.) Set `POD_DIST_CARGO` to use another
  cargo binary.

  In `MIX_ENV=test` (pod_dist's own test builds: a dependency is compiled in its own
  environment, `:prod` unless the parent says otherwise) it adds `--features test-hooks`,
  the NIFs only tests call; `PodDist.Native` defines their stubs under the same
  condition.
  """
  use Mix.Task.Compiler

  @library "libpod_dist_nif.so"
  @target "pod_dist_nif.so"

  @impl true
  def run(_args) do
    root = Path.dirname(__ENV__.file)
    cargo = System.get_env("POD_DIST_CARGO", "cargo")

    unless System.find_executable(cargo) do
      Mix.raise("pod_dist needs Rust's cargo (Rust >= 1.91) to build its NIF; none found on PATH")
    end

    native = Path.join(root, "native")
    args = ["build", "--release", "--locked", "-p", "pod_dist_nif"] ++ features(Mix.env())
    opts = [cd: native, stderr_to_stdout: true, into: IO.stream(:stdio, :line)]

    case System.cmd(cargo, args, opts) do
      {_, 0} -> install(root, cargo_target_dir(cargo, native))
      {_, status} -> Mix.raise("cargo #{Enum.join(args, " ")} failed with exit status #{status}")
    end
  end

  defp features(:test), do: ["--features", "test-hooks"]
  defp features(_), do: []

  defp install(root, target_dir) do
    built = Path.join([target_dir, "release", @library])
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

  # Mix links _build/ENV/lib/pod_dist/priv to priv/ before the compilers run, and only
  # if priv/ existed then: on a first build (a fresh clone, a clean Docker stage) it did
  # not, and :code.priv_dir/1 would point nowhere until the next `mix compile`. Laying
  # out the build structure again now links it.
  defp link_priv do
    config = Mix.Project.config()
    linked = Path.join(Mix.Project.app_path(config), "priv")
    unless File.exists?(linked), do: Mix.Project.build_structure(config)
  end

  # Where cargo put the build, as cargo itself reports it: `CARGO_TARGET_DIR` if set, else
  # a cargo config's `build.target-dir` (pod_dist's checkout has one, so both of its
  # workspaces share target/; an application may have its own), else native/target.
  # (JSON without a JSON library: the value is one string, unescaped below.)
  defp cargo_target_dir(cargo, native) do
    args = ["metadata", "--format-version", "1", "--no-deps", "--offline"]

    with {json, 0} <- System.cmd(cargo, args, cd: native),
         [_, dir] <- Regex.run(~r/"target_directory":"((?:[^"\\]|\\.)*)"/, json) do
      Regex.replace(~r/\\(["\\\/])/, dir, "\\1")
    else
      _ -> Mix.raise("cargo #{Enum.join(args, " ")} in #{native} reported no target directory")
    end
  end
end

defmodule PodDist.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :pod_dist,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:pod_dist_nif | Mix.compilers()],
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      preferred_cli_env: ["pod_dist.demo": :test],
      # :telemetry is optional at runtime.
      xref: [exclude: [:telemetry]],
      description:
        "Erlang distribution on Kubernetes: pod-name node names, a watch-driven libcluster strategy, epmd-less mode.",
      package: package(),
      docs: docs()
    ]
  end

  # What ships builds alone: the NIF compiler builds in native/, a Cargo workspace of the
  # engine and the NIF only, with its own Cargo.lock. The root Cargo workspace (the
  # simulator, the engine's tests against it, the benchmarks) is development tooling and
  # stays out, and so does any build output under native/. The release test builds an
  # application from exactly these files (test/support/package.ex lists them as Hex does).
  defp package do
    [
      licenses: ["Apache-2.0"],
      files: ~w(lib native guides mix.exs README.md CHANGELOG.md LICENSE),
      exclude_patterns: [~r"^native/target(/|$)"]
    ]
  end

  # For `mix docs` (ex_doc is not a dependency: add it to build them).
  defp docs do
    [
      main: "readme",
      extras: ["README.md" | Path.wildcard("guides/*.md")] ++ ["CHANGELOG.md", "LICENSE"],
      source_ref: "v#{@version}"
    ]
  end

  def application do
    [
      mod: {PodDist.Application, []},
      extra_applications: [:logger | tooling_applications(Mix.env())]
    ]
  end

  # The demo runs real nodes through the multi-pod test harness: both live in :test, and
  # only there. (A project depending on pod_dist compiles it in :prod.)
  defp elixirc_paths(:test), do: ["lib", "test/support", "demo"]
  defp elixirc_paths(_), do: ["lib"]

  # The harness drives the simulator with :httpc, which needs :ssl's modules even for
  # plain HTTP (it computes TLS defaults on every request since OTP 26). Declared, because
  # since Elixir 1.15 Mix prunes the code path to the applications a project declares.
  defp tooling_applications(:test), do: [:inets, :ssl]
  defp tooling_applications(_), do: []
end
