# The native pod index, measured from Elixir against the simulator:
# initial sync, resolve latency (NIF and :inet.getaddr for reference), memory per pod,
# API change -> Elixir message latency, and long schedules caused meanwhile.
#
#     mix run bench/native.exs -- --pods 10000 --trials 200
#
# Results go to BENCHMARKS.md by hand; `--pods 100 --trials 5` is the smoke size CI runs.

alias KubeDist.{Simulator, Watch}

{opts, _, _} =
  OptionParser.parse(Enum.reject(System.argv(), &(&1 == "--")),
    strict: [pods: :integer, trials: :integer, resolves: :integer]
  )

pods = Keyword.get(opts, :pods, 10_000)
trials = Keyword.get(opts, :trials, 200)
resolves = Keyword.get(opts, :resolves, 100_000)

defmodule Bench do
  def percentiles(samples) do
    sorted = Enum.sort(samples)
    n = length(sorted)
    at = fn p -> Enum.at(sorted, min(n - 1, round(p / 100 * (n - 1)))) end
    %{p50: at.(50), p99: at.(99), max: List.last(sorted)}
  end

  def fmt_ns(ns) when ns < 10_000, do: "#{Float.round(ns / 1000, 2)} us"
  def fmt_ns(ns), do: "#{Float.round(ns / 1_000_000, 2)} ms"

  def rss do
    [_, resident | _] = File.read!("/proc/self/statm") |> String.split()
    String.to_integer(resident) * 4096
  end

  def time(fun) do
    t0 = System.monotonic_time(:nanosecond)
    result = fun.()
    {System.monotonic_time(:nanosecond) - t0, result}
  end
end

:erlang.system_monitor(self(), [{:long_schedule, 1}])
{:ok, sim} = Simulator.start(pods: pods, history: 100_000)
rss_before = Bench.rss()

{sync_ns, {:ok, watch}} =
  Bench.time(fn ->
    {:ok, watch} = Watch.start(Simulator.watch_options(sim))
    true = Watch.await_synced(watch, 120_000)
    {:ok, watch}
  end)

:erlang.garbage_collect()
health = Watch.health(watch)
rss_growth = Bench.rss() - rss_before

names = for i <- 0..(pods - 1), do: "pod-#{i}"
names = List.to_tuple(names)

resolve_samples =
  for i <- 1..resolves do
    name = elem(names, rem(i * 7919, pods))
    {ns, {:ok, _}} = Bench.time(fn -> Watch.resolve(watch, name) end)
    ns
  end

getaddr_samples =
  for _ <- 1..min(resolves, 20_000) do
    {ns, {:ok, _}} = Bench.time(fn -> :inet.getaddr(~c"localhost", :inet) end)
    ns
  end

tag = Watch.subscribe(watch)

event_samples =
  for i <- 1..trials do
    name = "pod-#{rem(i, pods)}"
    ready = if rem(div(i, pods), 2) == 0, do: "False", else: "True"
    body = ~s({"status":{"conditions":[{"type":"Ready","status":"#{ready}"}]}})
    path = "/api/v1/namespaces/default/pods/#{name}/status"
    t0 = System.monotonic_time(:nanosecond)

    {:ok, 200, _} =
      Simulator.request(sim, :patch, path, body, "application/strategic-merge-patch+json")

    receive do
      {:kube_dist, ^tag, {:changed, _, %{name: ^name}}} -> System.monotonic_time(:nanosecond) - t0
    after
      10_000 -> raise "no event for #{name}: #{inspect(Process.info(self(), :messages))}"
    end
  end

long_schedules =
  Stream.repeatedly(fn ->
    receive do
      {:monitor, pid, :long_schedule, info} -> {pid, info}
    after
      0 -> nil
    end
  end)
  |> Enum.take_while(& &1)

ours = Enum.filter(long_schedules, fn {_, info} -> inspect(info) =~ "KubeDist.Native" end)

r = Bench.percentiles(resolve_samples)
g = Bench.percentiles(getaddr_samples)
e = Bench.percentiles(event_samples)

IO.puts("""
native: #{pods} pods
  initial sync (list + index): #{Bench.fmt_ns(sync_ns)}
  resolve from Elixir (#{resolves} calls): p50 #{Bench.fmt_ns(r.p50)} p99 #{Bench.fmt_ns(r.p99)} max #{Bench.fmt_ns(r.max)}
  :inet.getaddr("localhost") for reference: p50 #{Bench.fmt_ns(g.p50)} p99 #{Bench.fmt_ns(g.p99)}
  index: #{health.index_bytes} bytes = #{div(health.index_bytes, max(pods, 1))} bytes/pod; VM RSS growth #{div(rss_growth, max(pods, 1))} bytes/pod
  API change -> Elixir message (#{trials} trials): p50 #{Bench.fmt_ns(e.p50)} p99 #{Bench.fmt_ns(e.p99)} max #{Bench.fmt_ns(e.max)}
  long_schedule > 1 ms: #{length(long_schedules)} in all, #{length(ours)} in KubeDist.Native
""")

Simulator.stop(sim)
