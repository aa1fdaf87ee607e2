defmodule PodDist.Test.LaggingProxy do
  @moduledoc """
  A TCP proxy on loopback that hands the server's bytes on `lag` ms late (requests go
  through at once): started inside one node, it makes that node's watch lag behind the
  others', as watches of one API server do under load. TLS passes through untouched,
  so the client must accept `127.0.0.1` as the server's name (`Cluster` adds it to the
  simulator's certificate).

      {:ok, port} = LaggingProxy.start({{198, 51, 100, 254}, 6443}, 1_500)
  """

  @doc "Starts the proxy (unlinked, it lives as long as the node); returns its port."
  @spec start({:inet.ip_address(), :inet.port_number()}, non_neg_integer()) ::
          {:ok, :inet.port_number()}
  def start(upstream, lag) do
    caller = self()

    spawn(fn ->
      {:ok, listen} =
        :gen_tcp.listen(0, [:binary, ip: {127, 0, 0, 1}, active: false, reuseaddr: true])

      send(caller, {:proxy_port, :inet.port(listen)})
      accept(listen, upstream, lag)
    end)

    receive do
      {:proxy_port, {:ok, port}} -> {:ok, port}
    end
  end

  defp accept(listen, upstream, lag) do
    {:ok, client} = :gen_tcp.accept(listen)
    pid = spawn(fn -> relay(upstream, lag) end)
    :ok = :gen_tcp.controlling_process(client, pid)
    send(pid, {:client, client})
    accept(listen, upstream, lag)
  end

  # One connection: the client's bytes go up at once; the server's are stamped and
  # handed to a delivery process that sends each `lag` ms after it came, in order.
  defp relay({ip, port}, lag) do
    client = receive(do: ({:client, socket} -> socket))
    {:ok, server} = :gen_tcp.connect(ip, port, [:binary, active: true])
    deliver = spawn_link(fn -> deliver(client, lag) end)
    :ok = :inet.setopts(client, active: true)
    pump(client, server, deliver)
  end

  defp pump(client, server, deliver) do
    receive do
      {:tcp, ^client, data} ->
        :ok = :gen_tcp.send(server, data)
        pump(client, server, deliver)

      {:tcp, ^server, data} ->
        send(deliver, {:data, System.monotonic_time(:millisecond), data})
        pump(client, server, deliver)

      # The server's end goes on as late as its bytes; the client's at once.
      # (This process owns the client's socket: it waits for the late bytes to go.)
      {:tcp_closed, ^server} ->
        ref = Process.monitor(deliver)
        send(deliver, :close)
        receive(do: ({:DOWN, ^ref, _, _, _} -> :ok))

      {:tcp_closed, ^client} ->
        :gen_tcp.close(server)
        Process.exit(deliver, :kill)
    end
  end

  defp deliver(client, lag) do
    receive do
      {:data, at, data} ->
        Process.sleep(max(at + lag - System.monotonic_time(:millisecond), 0))
        :gen_tcp.send(client, data)
        deliver(client, lag)

      :close ->
        :gen_tcp.close(client)
    end
  end
end
