defmodule PodDist.Test.NodeRepl do
  @moduledoc """
  Runs inside a test node (a real BEAM OS process): reads one line (Base64 of Elixir code)
  from standard input, evaluates it, and answers `KDREPL <base64 of term_to_binary>`.
  `PodDist.Test.Node` drives it.
  """

  @doc "The read-eval-print loop; returns when standard input closes."
  def start do
    case IO.read(:stdio, :line) do
      :eof ->
        :init.stop()

      {:error, _} ->
        :init.stop()

      line ->
        result =
          try do
            {value, _} =
              line
              |> IO.chardata_to_string()
              |> String.trim()
              |> Base.decode64!()
              |> Code.eval_string()

            {:ok, value}
          catch
            kind, reason -> {:error, {kind, reason}}
          end

        IO.write(["KDREPL ", Base.encode64(:erlang.term_to_binary(result)), "\n"])
        start()
    end
  end
end
