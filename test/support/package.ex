defmodule PodDist.Test.Package do
  @moduledoc """
  The files pod_dist's Hex package holds, listed as `mix hex.build` lists them from
  `package/0` in mix.exs: each `files:` entry expanded as a wildcard, directories
  recursively (hidden files too), then every path matching `exclude_patterns:` (or
  `.DS_Store`) left out. `copy!/1` lays them out in a directory, as the unpacked tarball
  would be, for tests that build from the package alone.
  """

  @doc "The package's files (no directories), relative to the project root, sorted."
  @spec files() :: [Path.t()]
  def files do
    package = Mix.Project.config()[:package]
    root = File.cwd!()
    patterns = Keyword.get(package, :exclude_patterns, []) ++ [~r/\W\.DS_Store$/]

    package[:files]
    |> Enum.flat_map(&Path.wildcard(Path.join(root, &1)))
    |> Enum.flat_map(&expand/1)
    |> Enum.map(&Path.relative_to(&1, root))
    |> Enum.uniq()
    |> Enum.reject(fn path -> Enum.any?(patterns, &(path =~ &1)) end)
    |> Enum.filter(&File.regular?/1)
    |> Enum.sort()
  end

  @doc "Copies the package's files into `dir`; returns `dir`."
  @spec copy!(Path.t()) :: Path.t()
  def copy!(dir) do
    for file <- files() do
      File.mkdir_p!(Path.dirname(Path.join(dir, file)))
      File.cp!(file, Path.join(dir, file))
    end

    dir
  end

  defp expand(path) do
    case File.lstat(path) do
      {:ok, %File.Stat{type: :directory}} ->
        [path | path |> File.ls!() |> Enum.flat_map(&expand(Path.join(path, &1)))]

      _ ->
        [path]
    end
  end
end
