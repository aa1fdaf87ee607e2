defmodule PodDist.Strategy.EpmdNames do
  @moduledoc false
  # Asks a peer's epmd which nodes it has, reading at most a bounded answer within a
  # bounded time. OTP's :erl_epmd.names/1 buffers until the peer closes: a pod whose
  # epmd streams without end would make every node that asks hold all of it for the
  # whole connect timeout. A real answer is a few dozen bytes per node.
  #
  # The protocol (NAMES_REQ): send <<1::16, ?n>>; epmd answers its own port as 4 bytes,
  # then one line `name <name> at port <port>\n` per node, and closes.

  @names_req <<1::16, ?n>>
  @default_max_bytes 65_536

  @typedoc "Why no names came back."
  @type error :: :too_large | :timeout | :address | :inet.posix()

  @doc """
  The `{name, port}` pairs `ip`'s epmd lists. Options: `:timeout` (ms, for the whole
  exchange), `:max_bytes` (default 64 KiB: a longer answer is `{:error, :too_large}`),
  `:port` (default the VM's epmd port).
  """
  @spec names(:inet.ip_address(), keyword()) ::
          {:ok, [{String.t(), :inet.port_number()}]} | {:error, error()}
  def names(ip, opts \\ []) do
    port = Keyword.get_lazy(opts, :port, &epmd_port/0)
    timeout = Keyword.get(opts, :timeout) || 5_000
    max_bytes = Keyword.get(opts, :max_bytes, @default_max_bytes)
    deadline = now() + timeout

    case :gen_tcp.connect(ip, port, [:binary, active: false, packet: :raw], timeout) do
      {:ok, socket} ->
        try do
          with :ok <- :gen_tcp.send(socket, @names_req),
               {:ok, answer} <- read(socket, deadline, max_bytes, 0, []) do
            parse(answer, port)
          end
        after
          :gen_tcp.close(socket)
        end

      {:error, _} = error ->
        error
    end
  end

  # Reads until the peer closes, the answer outgrows `max_bytes` or the deadline passes.
  defp read(socket, deadline, max_bytes, size, acc) do
    case :gen_tcp.recv(socket, 0, max(deadline - now(), 0)) do
      {:ok, data} when size + byte_size(data) > max_bytes ->
        {:error, :too_large}

      {:ok, data} ->
        read(socket, deadline, max_bytes, size + byte_size(data), [acc | data])

      {:error, :closed} ->
        {:ok, IO.iodata_to_binary(acc)}

      {:error, _} = error ->
        error
    end
  end

  # epmd first says its own port (as :erl_epmd checks, an answer from another port is
  # not an epmd's); an empty answer is no nodes.
  defp parse(<<>>, _port), do: {:ok, []}

  defp parse(<<port::32, lines::binary>>, port) do
    names =
      lines
      |> String.split("\n")
      # The last piece is what followed the last newline: no complete line.
      |> Enum.drop(-1)
      |> Enum.flat_map(&line/1)

    {:ok, names}
  end

  defp parse(_answer, _port), do: {:error, :address}

  defp line("name " <> rest) do
    with [name, port] <- String.split(rest, " at port ", parts: 2),
         {port, ""} when port in 1..65_535 <- Integer.parse(port) do
      [{name, port}]
    else
      _ -> []
    end
  end

  defp line(_), do: []

  # The port epmd listens on, as :erl_epmd finds it: `-epmd_port`, else
  # ERL_EPMD_PORT, else 4369.
  defp epmd_port do
    with {:ok, [[port | _] | _]} <- :init.get_argument(:epmd_port),
         {port, ""} <- Integer.parse(List.to_string(port)) do
      port
    else
      _ ->
        case Integer.parse(System.get_env("ERL_EPMD_PORT", "")) do
          {port, ""} -> port
          _ -> 4369
        end
    end
  end

  defp now, do: System.monotonic_time(:millisecond)
end
