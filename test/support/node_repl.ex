defmodule PodDist.Test.NodeRepl do
  @moduledoc """
  Runs inside a test node (a real BEAM OS process): reads one line (`<id> <Base64 of
  Elixir code>`) from standard input, evaluates it, and answers `KDREPL <id> <Base64 of
  term_to_binary>` on a line of its own. `PodDist.Test.Node` drives it.

  The node's native threads write to the same console (a panic's message, the watch's
  log lines) in pieces, unsynchronised with the BEAM: the answer starts with a newline
  so that it never continues their unfinished line, and the reader finds it anywhere
  in a line.
  """

  @doc "The read-eval-print loop; returns when standard input closes."
  def start do
    case IO.read(:stdio, :line) do
      :eof ->
        :init.stop()

      {:error, _} ->
        :init.stop()

      line ->
        [id, code] = line |> IO.chardata_to_string() |> String.trim() |> String.split(" ")

        result =
          try do
            {value, _} = code |> Base.decode64!() |> Code.eval_string()

            {:ok, value}
          catch
            kind, reason -> {:error, {kind, reason}}
          end

        IO.write(["\nKDREPL ", id, " ", Base.encode64(:erlang.term_to_binary(result)), "\n"])
        start()
    end
  end
end
