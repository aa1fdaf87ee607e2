defmodule PodDist.Strategy.EpmdNamesTest do
  # `nodes: :epmd` asks each pod's epmd for its names: what a peer answers must never
  # exhaust the node that asks. Fake epmds on loopback, each answering one way.
  use ExUnit.Case, async: true

  alias PodDist.Strategy.EpmdNames

  # A one-connection epmd: reads the request, then runs `answer.(socket, port)`.
  defp fake_epmd(answer) do
    {:ok, listen} = :gen_tcp.listen(0, [:binary, active: false, ip: {127, 0, 0, 1}])
    {:ok, port} = :inet.port(listen)

    server =
      spawn_link(fn ->
        {:ok, socket} = :gen_tcp.accept(listen)
        {:ok, <<1::16, ?n>>} = :gen_tcp.recv(socket, 3)
        answer.(socket, port)
      end)

    {server, port}
  end

  test "reads the names of a real answer" do
    {_, port} =
      fake_epmd(fn socket, port ->
        :gen_tcp.send(socket, [
          <<port::32>>,
          "name app at port 4370\n",
          "name odd line\n",
          "name remote at port 4371\n",
          "name cut at po"
        ])

        :gen_tcp.close(socket)
      end)

    assert {:ok, [{"app", 4370}, {"remote", 4371}]} =
             EpmdNames.names({127, 0, 0, 1}, port: port, timeout: 5_000)
  end

  test "an answer from what is not an epmd (another port in its header) is no answer" do
    {_, port} =
      fake_epmd(fn socket, port ->
        :gen_tcp.send(socket, [<<port + 1::32>>, "name app at port 4370\n"])
        :gen_tcp.close(socket)
      end)

    assert {:error, :address} = EpmdNames.names({127, 0, 0, 1}, port: port)
  end

  test "an endless answer is cut at its bound, and the caller's memory stays bounded" do
    parent = self()

    {_, port} =
      fake_epmd(fn socket, port ->
        line = String.duplicate("name flood at port 4370\n", 1_000)
        :gen_tcp.send(socket, <<port::32>>)
        stream = fn stream -> if :gen_tcp.send(socket, line) == :ok, do: stream.(stream) end
        stream.(stream)
        send(parent, :peer_cut_off)
      end)

    {caller, ref} =
      spawn_monitor(fn ->
        send(parent, {:answer, EpmdNames.names({127, 0, 0, 1}, port: port, timeout: 3_000)})
      end)

    peak = sample_memory(caller, ref, 0)
    # The bound is 64 KiB; unbounded, as :erl_epmd.names/1 reads, it holds megabytes.
    assert peak < 1_000_000, "the caller held #{peak} bytes"
    assert_received {:answer, {:error, :too_large}}
    # The caller closed the connection: the endless peer is cut off.
    assert_receive :peer_cut_off, 5_000
  end

  test "an answer that never ends nor grows is given up at the deadline" do
    {_, port} =
      fake_epmd(fn socket, port ->
        :gen_tcp.send(socket, [<<port::32>>, "name app at po"])
        receive do: (:never -> :ok)
      end)

    assert {:error, :timeout} = EpmdNames.names({127, 0, 0, 1}, port: port, timeout: 200)
  end

  # The most the caller's heap and the binaries it references ever held, sampled until
  # it exits.
  defp sample_memory(pid, ref, peak) do
    receive do
      {:DOWN, ^ref, :process, ^pid, _} -> peak
    after
      1 ->
        case Process.info(pid, [:memory, :binary]) do
          [memory: memory, binary: binaries] ->
            held = memory + Enum.sum(for {_, size, _} <- binaries, do: size)
            sample_memory(pid, ref, max(peak, held))

          nil ->
            sample_memory(pid, ref, peak)
        end
    end
  end
end
