defmodule PodDist.Test.Bench do
  @moduledoc """
  What the scripts in `bench/` share: their command-line options and how they summarise
  and print samples. (They run with `MIX_ENV=test`, for the harness in test/support.)
  """

  @doc """
  The script's options: `defaults` names each `--switch` (underscores become dashes)
  with its default, whose type (integer, boolean, string) is the switch's type. An
  unknown switch stops the script with a message.
  """
  @spec options(keyword()) :: map()
  def options(defaults) do
    strict = for {key, default} <- defaults, do: {key, type(default)}
    argv = Enum.reject(System.argv(), &(&1 == "--"))

    case OptionParser.parse(argv, strict: strict) do
      {given, [], []} -> defaults |> Keyword.merge(given) |> Map.new()
      {_, rest, invalid} -> raise ArgumentError, "unknown options: #{inspect(rest ++ invalid)}"
    end
  end

  defp type(default) when is_integer(default), do: :integer
  defp type(default) when is_boolean(default), do: :boolean
  defp type(default) when is_binary(default), do: :string

  @doc "The `percentiles` (e.g. `[50, 99]`, keyed `:p50`, `:p99`) and the max of `samples`."
  @spec percentiles([number()], [number()]) :: map()
  def percentiles(samples, percentiles \\ [50, 99]) do
    sorted = Enum.sort(samples)
    last = length(sorted) - 1
    at = fn p -> Enum.at(sorted, min(last, round(p / 100 * last))) end
    key = fn p -> String.to_atom("p" <> String.replace(to_string(p), ".", "")) end
    Map.new(percentiles, &{key.(&1), at.(&1)}) |> Map.put(:max, List.last(sorted))
  end

  @doc "Nanoseconds, in microseconds below 10 us, else in milliseconds."
  @spec fmt_ns(number()) :: String.t()
  def fmt_ns(ns) when ns < 10_000, do: "#{Float.round(ns / 1000, 2)} us"
  def fmt_ns(ns), do: "#{Float.round(ns / 1_000_000, 2)} ms"
end
