defmodule PodDist.VersionTest do
  # One version for everything pod_dist is: mix.exs states it, and every crate of both
  # Cargo workspaces (the product's and the development one) states the same, as does
  # each workspace's lock file (the NIF compiler builds with --locked).
  use ExUnit.Case, async: true

  alias PodDist.Test.JSON

  for manifest <- ["native/Cargo.toml", "Cargo.toml"] do
    test "every crate of #{manifest} and its lock have mix.exs's version" do
      version = Mix.Project.config()[:version]
      manifest = unquote(manifest)
      args = ~w(metadata --format-version 1 --no-deps --offline --manifest-path)
      {json, 0} = System.cmd("cargo", args ++ [manifest])
      lock = File.read!(Path.join(Path.dirname(manifest), "Cargo.lock"))
      crates = for p <- JSON.decode!(json)["packages"], do: {p["name"], p["version"]}
      assert crates != []

      for {crate, stated} <- crates do
        assert stated == version, "#{crate} #{stated} in #{manifest}, #{version} in mix.exs"

        assert lock =~ ~s(name = "#{crate}"\nversion = "#{version}"\n),
               "#{crate} is not at #{version} in its workspace's Cargo.lock"
      end
    end
  end
end
