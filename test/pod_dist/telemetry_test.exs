defmodule PodDist.TelemetryTest do
  # The watch reporter's life: one per watch, however many share it, and gone with the
  # watch. Not async: it tells reporters apart from those other tests' watches start.
  use PodDist.SimCase, async: false

  alias PodDist.{Simulator, Watch}

  test "a shared watch has one reporter, which ends when the watch stops", %{sim: sim} do
    before = reporters()

    reporter =
      Task.async(fn ->
        {:ok, watch} = Watch.start(Simulator.watch_options(sim))
        # A second user of the same watch: no second reporter.
        {:ok, _} = Watch.start(Simulator.watch_options(sim))
        true = Watch.await_synced(watch, 10_000)
        assert [reporter] = reporters() -- before
        reporter
      end)
      |> Task.await(15_000)

    assert Process.alive?(reporter)
    ref = Process.monitor(reporter)
    # The handles were the task's, gone with it: the watch stops, and so does its reporter,
    # which held none.
    assert_receive {:DOWN, ^ref, :process, ^reporter, :normal}, 10_000
    eventually(fn -> sim_stats(sim)["open_watches"] == 0 end)
  end

  defp reporters do
    for pid <- Process.list(),
        match?(
          {:current_function, {PodDist.Telemetry, :report, 2}},
          Process.info(pid, :current_function)
        ),
        do: pid
  end
end
