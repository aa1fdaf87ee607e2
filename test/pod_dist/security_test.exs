defmodule PodDist.SecurityTest do
  # The token stays secret, TLS to the API fails closed, and only the pods the
  # configuration selects are ever connected.
  use PodDist.SimCase, async: true

  import ExUnit.CaptureLog

  alias PodDist.{Simulator, Watch}

  test "the token never appears in errors, health, events, logs or the doctor", %{sim: sim} do
    token = File.read!(Path.join(sim.dir, "serviceaccount/token")) |> String.trim()
    options = Keyword.delete(Simulator.watch_options(sim), :token_file) ++ [token: token]

    log =
      capture_log(fn ->
        {:ok, watch} = Watch.start(options)
        assert Watch.await_synced(watch, 10_000)
        tag = Watch.subscribe(watch)
        {:ok, pid} = PodDist.Strategy.start_link(options ++ [node_basename: "app"])

        # A 403, then the token revoked (401): both end up in errors and logs.
        fault!(sim, "rbac", namespaces: "elsewhere")
        fault!(sim, "faults/cut-watches")
        assert {:api_error, forbidden} = next_event(tag, 10_000) |> skip_pods(tag)
        fault!(sim, "faults/rotate-token")
        fault!(sim, "faults/cut-watches")
        assert {:api_error, unauthorized} = next_event(tag, 10_000) |> skip_pods(tag)
        Process.sleep(300)

        # A token of the wrong type: refused without echoing it, stacktrace included.
        charlist_token = Keyword.put(options, :token, String.to_charlist(token))
        start_error = raised(fn -> Watch.start(charlist_token) end)
        assert start_error =~ "(ArgumentError) option :token must be a string"

        texts = [
          forbidden,
          unauthorized,
          inspect(Watch.health(watch)),
          inspect(:sys.get_state(pid)),
          PodDist.Doctor.format(PodDist.Doctor.run(options ++ [node_basename: "app"])),
          start_error,
          inspect(Watch.check_options(charlist_token)),
          inspect(PodDist.Strategy.Config.validate(token: String.to_charlist(token)))
        ]

        assert forbidden =~ "403" and unauthorized =~ "401"
        for text <- texts, do: refute(text =~ token)
        GenServer.stop(pid)
      end)

    assert log =~ "403"
    refute log =~ token
  end

  # The ArgumentError `fun` raises, formatted with its stacktrace.
  defp raised(fun) do
    fun.()
    flunk("expected an ArgumentError")
  rescue
    error in ArgumentError -> Exception.format(:error, error, __STACKTRACE__)
  end

  test "a CA that did not sign the API server's certificate fails closed", %{sim: sim} do
    dir = Path.join(System.tmp_dir!(), "other-ca-#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm_rf(dir) end)
    {_, 0} = System.cmd(Simulator.binary(), ["certs", "--dir", dir, "--san", "x"])
    create_pod(sim, "default", "api-0", ip: "198.51.100.1")

    options = Keyword.put(Simulator.watch_options(sim), :ca_file, Path.join(dir, "ca.pem"))
    {:ok, watch} = Watch.start(options)
    refute Watch.await_synced(watch, 2_000)
    assert Watch.pods(watch) == []
    %{last_error: error, error: :certificate} = Watch.health(watch)
    assert error =~ ~r/certificate|CA/i
  end

  test "only pods in the configured namespaces and matching the selector are connected",
       %{sim: sim} do
    create_pod(sim, "default", "shop-0", ip: "198.51.100.1", labels: [app: "shop"])
    create_pod(sim, "default", "other-0", ip: "198.51.100.2", labels: [app: "other"])
    create_pod(sim, "default", "bare-0", ip: "198.51.100.3")
    create_pod(sim, "elsewhere", "shop-1", ip: "198.51.100.4", labels: [app: "shop"])
    test = self()

    {:ok, _} =
      start_supervised(
        {PodDist.Strategy,
         [
           %Cluster.Strategy.State{
             topology: :k8s,
             connect: {PodDist.Test.Recorder, :connect, [test]},
             disconnect: {PodDist.Test.Recorder, :disconnect, [test]},
             list_nodes: {PodDist.Test.Recorder, :list_nodes, [test]},
             config:
               Simulator.watch_options(sim) ++
                 [namespaces: ["default"], label_selector: "app=shop", node_basename: "app"]
           }
         ]}
      )

    assert_receive {:connect, :"app@shop-0"}, 5_000
    # (The recorder reports nothing connected, so app@shop-0 may be asked for again.)
    Process.sleep(1_000)
    {:messages, messages} = Process.info(self(), :messages)
    assert Enum.uniq(for {:connect, node} <- messages, do: node) -- [:"app@shop-0"] == []
  end

  defp skip_pods({:api_error, _} = event, _tag), do: event
  defp skip_pods(_event, tag), do: next_event(tag, 10_000) |> skip_pods(tag)
end
