defmodule PodDist.TelemetryTest do
  # The watch reporter's life: one per watch, however many share it, and gone with the
  # watch. Not async: it tells reporters apart from those other tests' watches start.
  use PodDist.SimCase, async: false

  alias PodDist.{Simulator, Watch}

  test "a shared watch has one reporter, which ends when the watch stops", %{sim: sim} do
    test = self()
    before = reporters()

    # The reporter emits in its own process: the handler tells which one it is.
    report = fn _, _, metadata, _ ->
      if String.starts_with?(metadata.api_url, sim.url), do: send(test, {:synced, self()})
    end

    :ok = :telemetry.attach({__MODULE__, test}, [:pod_dist, :watch, :sync], report, nil)
    on_exit(fn -> :telemetry.detach({__MODULE__, test}) end)

    # The handles live in this task, until it is told to end.
    holder =
      Task.async(fn ->
        {:ok, first} = Watch.start(Simulator.watch_options(sim))
        # A second user of the same watch: no second reporter.
        {:ok, second} = Watch.start(Simulator.watch_options(sim))
        # Kept where no garbage collection frees them before the task ends.
        send(self(), {:handles, first, second})

        receive do
          :done -> :ok
        end
      end)

    assert_receive {:synced, reporter}, 10_000
    assert reporters() -- before == [reporter]
    # A second reporter would tell of the same sync.
    refute_receive {:synced, _}, 500
    ref = Process.monitor(reporter)
    send(holder.pid, :done)
    Task.await(holder)
    # The handles were the task's, gone with it: the watch stops, and so does its reporter,
    # which held none.
    assert_receive {:DOWN, ^ref, :process, ^reporter, :normal}, 10_000
    eventually(fn -> sim_stats(sim)["open_watches"] == 0 end)
  end

  defp reporters do
    for pid <- Process.list(),
        {:dictionary, dictionary} <- [Process.info(pid, :dictionary)],
        dictionary[:"$initial_call"] == {PodDist.Telemetry, :reporter, 1},
        do: pid
  end
end
