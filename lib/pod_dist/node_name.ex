defmodule PodDist.NodeName do
  @moduledoc false
  # A node name's two halves, `basename@host`: the one place that splits them.

  @doc "The host of a node name (`web-0` of `app@web-0`)."
  @spec host(node() | String.t()) :: String.t()
  def host(node), do: node |> split() |> elem(1)

  @doc "The basename of a node name (`app` of `app@web-0`)."
  @spec basename(node() | String.t()) :: String.t()
  def basename(node), do: node |> split() |> elem(0)

  @doc "Both halves; a name without `@` is all basename, with an empty host."
  @spec split(node() | String.t()) :: {String.t(), String.t()}
  def split(node) do
    case node |> to_string() |> String.split("@", parts: 2) do
      [name, host] -> {name, host}
      [name] -> {name, ""}
    end
  end
end
