# Resolve latency while the watch re-lists: `PodDist.Watch.resolve/2` called from Elixir,
# each call timed alone, while the simulator forces a re-list of every pod again and
# again (compacted history, then watches cut with `410 Gone`) and churns pods meanwhile,
# with a subscriber hearing every event. Also counts long schedules (> 1 ms) in the VM and
# in our NIFs: a lookup on a normal scheduler must never wait for the watch's writer.
#
#     MIX_ENV=test mix run bench/relist.exs -- --pods 10000 --resolves 100000 --seconds 20
#
# Results go to BENCHMARKS.md by hand; see scripts/test for the smoke size CI runs.

alias PodDist.{Simulator, Watch}
alias PodDist.Test.Bench, as: Stats

%{
  pods: pods,
  resolves: resolves,
  seconds: seconds,
  churn_rate: churn_rate,
  relist_every_ms: relist_every_ms
} =
  Stats.options(
    pods: 10_000,
    resolves: 100_000,
    seconds: 20,
    churn_rate: 100,
    relist_every_ms: 2_000
  )

defmodule Relist do
  # Forces a re-list every `every_ms` until told to stop: the simulator forgets its
  # history, then cuts every watch with a 410, so each watcher must list again.
  def forcer(sim, every_ms, count \\ 0) do
    receive do
      {:stop, from} -> send(from, {:forced, count})
    after
      every_ms ->
        {:ok, 200, _} = Simulator.fault(sim, "faults/compact")
        {:ok, 200, _} = Simulator.fault(sim, "faults/cut-watches", expired: true)
        forcer(sim, every_ms, count + 1)
    end
  end

  # A subscriber hearing every event, as a strategy does; counts completed re-lists.
  def listener(tag, events \\ 0, synced \\ 0) do
    receive do
      {:pod_dist, ^tag, :synced} -> listener(tag, events + 1, synced + 1)
      {:pod_dist, ^tag, _} -> listener(tag, events + 1, synced)
      {:report, from} -> send(from, {:heard, events, synced})
    end
  end

  # Times each call alone into an off-heap array, returned (so the samples' own garbage
  # stays out of the calls measured), pausing whenever ahead of schedule so that the calls spread
  # evenly over `ms`, re-lists included.
  def sample(n, ms, fun) do
    samples = :atomics.new(n, signed: false)
    start = System.monotonic_time(:millisecond)

    Enum.each(1..n, fn i ->
      t0 = System.monotonic_time(:nanosecond)
      fun.(i)
      :atomics.put(samples, i, System.monotonic_time(:nanosecond) - t0)
      ahead = start + div(i * ms, n) - System.monotonic_time(:millisecond)
      if ahead > 0, do: Process.sleep(ahead)
    end)

    samples
  end

  def samples(atomics) do
    for i <- 1..:atomics.info(atomics).size, do: :atomics.get(atomics, i)
  end

  def drain_long_schedules(acc \\ []) do
    receive do
      {:monitor, pid, :long_schedule, info} -> drain_long_schedules([{pid, info} | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end
end

{:ok, sim} = Simulator.start(pods: pods, history: 100_000)
{:ok, watch} = Watch.start(Simulator.watch_options(sim))
true = Watch.await_synced(watch, 120_000)

listener = spawn(fn -> Relist.listener(receive(do: ({:tag, tag} -> tag))) end)
send(listener, {:tag, Watch.subscribe(watch, listener)})

names = List.to_tuple(for i <- 0..(pods - 1), do: "pod-#{i}")
# Warm up (code loading, first calls) before anything is measured.
for i <- 0..999, do: {:ok, _} = Watch.resolve(watch, elem(names, rem(i, pods)))

_ = Relist.drain_long_schedules()
:erlang.system_monitor(self(), [{:long_schedule, 1}])
{:ok, 200, _} = Simulator.fault(sim, "churn", rate: churn_rate, seconds: seconds + 5)
forcer = spawn(fn -> Relist.forcer(sim, relist_every_ms) end)
t0 = System.monotonic_time(:millisecond)

# The calls run in a process of their own: the system monitor reports no long schedules
# of the process it reports to.
resolver =
  Task.async(fn ->
    Relist.sample(resolves, seconds * 1000, fn i ->
      # Churn flips readiness, never the IP: every pod resolves all along.
      {:ok, _} = Watch.resolve(watch, elem(names, rem(i * 7919, pods)))
    end)
  end)

# The task hands back the off-heap samples, not a list of them: copying 100,000 numbers
# to this process would be a long schedule of its own.
samples = Task.await(resolver, :infinity)

wall_ms = System.monotonic_time(:millisecond) - t0
:erlang.system_monitor(self(), [])
send(forcer, {:stop, self()})
forced = receive(do: ({:forced, n} -> n))
long_schedules = Relist.drain_long_schedules()
samples = Relist.samples(samples)
# A NIF call that blocks shows as a long schedule of its caller, with the caller's code as
# where it was scheduled in and out: the calls measured are this process's.
ours =
  Enum.filter(long_schedules, fn {pid, info} ->
    pid == resolver.pid or inspect(info) =~ "PodDist.Native"
  end)

send(listener, {:report, self()})
{events, relists} = receive(do: ({:heard, events, synced} -> {events, synced}))

r = Stats.percentiles(samples, [50, 99, 99.9])
over_1ms = Enum.count(samples, &(&1 > 1_000_000))

IO.puts("""
relist: #{pods} pods, #{resolves} resolves over #{wall_ms} ms; #{forced} re-lists forced (one each #{relist_every_ms} ms), #{relists} completed; churn #{churn_rate}/s; #{events} events heard
  `PodDist.Watch.resolve/2`: p50 #{Stats.fmt_ns(r.p50)} p99 #{Stats.fmt_ns(r.p99)} p99.9 #{Stats.fmt_ns(r.p999)} max #{Stats.fmt_ns(r.max)}; #{over_1ms} calls over 1 ms
  long_schedule > 1 ms: #{length(long_schedules)} in all, #{length(ours)} in the resolving process or PodDist.Native
#{for {pid, info} <- Enum.take(ours, 5), do: "    #{inspect(pid)} #{inspect(info)}\n"}\
""")

Simulator.stop(sim)
