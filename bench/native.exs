# The native pod index, measured from Elixir against the simulator:
# initial sync, resolve latency (NIF and :inet.getaddr for reference), memory per pod,
# API change -> Elixir message latency, index lag and CPU under steady churn driven by the
# simulator, and long schedules caused meanwhile.
#
#     MIX_ENV=test mix run bench/native.exs -- --pods 10000 --trials 200
#
# Results go to BENCHMARKS.md by hand; see scripts/test for the smoke size CI runs.

alias PodDist.{Simulator, Watch}
alias PodDist.Test.Bench, as: Stats

%{
  pods: pods,
  trials: trials,
  resolves: resolves,
  churn_rate: churn_rate,
  churn_seconds: churn_seconds
} =
  Stats.options(pods: 10_000, trials: 200, resolves: 100_000, churn_rate: 100, churn_seconds: 60)

defmodule Bench do
  def rss do
    [_, resident | _] = File.read!("/proc/self/statm") |> String.split()
    String.to_integer(resident) * 4096
  end

  # CPU time of this OS process, and of its threads named `prefix` alone (the NIF's
  # tokio runtime), in ns; from /proc, in clock ticks of 10 ms.
  def cpu_ns(prefix \\ "") do
    for task <- File.ls!("/proc/self/task"),
        String.starts_with?(File.read!("/proc/self/task/#{task}/comm"), prefix),
        reduce: 0 do
      total ->
        [_, after_comm] =
          File.read!("/proc/self/task/#{task}/stat") |> String.split(") ", parts: 2)

        [utime, stime] = after_comm |> String.split() |> Enum.slice(11, 2)
        total + (String.to_integer(utime) + String.to_integer(stime)) * 10_000_000
    end
  end

  # Times `fun.(i)` for i in 1..n; the samples go to an off-heap array, so that the
  # benchmark's own growing list of samples does not put its garbage collections into
  # the calls it measures.
  def sample(n, fun) do
    samples = :atomics.new(n, signed: false)

    Enum.each(1..n, fn i ->
      t0 = System.monotonic_time(:nanosecond)
      fun.(i)
      :atomics.put(samples, i, System.monotonic_time(:nanosecond) - t0)
    end)

    for i <- 1..n, do: :atomics.get(samples, i)
  end

  def time(fun) do
    t0 = System.monotonic_time(:nanosecond)
    result = fun.()
    {System.monotonic_time(:nanosecond) - t0, result}
  end
end

:erlang.system_monitor(self(), [{:long_schedule, 1}])
{:ok, sim} = Simulator.start(pods: pods, history: 100_000)

# The fixed cost first (runtime, TLS, HTTP client): a watch of an empty namespace.
{:ok, empty} = Watch.start(Keyword.put(Simulator.watch_options(sim), :namespaces, ["empty"]))
true = Watch.await_synced(empty, 10_000)
:erlang.garbage_collect()
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

names = List.to_tuple(for i <- 0..(pods - 1), do: "pod-#{i}")
charlist_names = names |> Tuple.to_list() |> Enum.map(&String.to_charlist/1) |> List.to_tuple()

# PodDist.Epmd as the VM's distribution calls it: env-configured, charlist hosts.
for {key, value} <- Simulator.watch_options(sim),
    do: System.put_env("POD_DIST_#{String.upcase(to_string(key))}", value)

System.put_env("POD_DIST_NAMESPACES", "default")
System.put_env("POD_DIST_MODE", "epmdless")
:ignore = PodDist.Epmd.start_link()
address_please = fn name -> PodDist.Epmd.address_please(~c"app", name, :inet) end

resolve_cases = [
  {"bare NIF call (`PodDist.Native.address/3`)", "epmd", names,
   &PodDist.Native.address(watch.resource, &1, :inet)},
  {"`PodDist.Watch.resolve/2`", "epmd", names, &Watch.resolve(watch, &1)},
  {"`PodDist.Epmd.address_please/3`, epmd mode", "epmd", charlist_names, address_please},
  {"`PodDist.Epmd.address_please/3`, epmd-less", "epmdless", charlist_names, address_please}
]

resolve_results =
  for {label, mode, names, fun} <- resolve_cases do
    # The mode is read when the distribution starts the module.
    System.put_env("POD_DIST_MODE", mode)
    PodDist.Epmd.start_link()

    samples =
      Bench.sample(resolves, fn i ->
        :ok = elem(fun.(elem(names, rem(i * 7919, pods))), 0)
      end)

    {label, Stats.percentiles(samples)}
  end

getaddr_samples =
  Bench.sample(min(resolves, 20_000), fn _ -> {:ok, _} = :inet.getaddr(~c"localhost", :inet) end)

tag = Watch.subscribe(watch)

event_samples =
  for i <- 1..trials do
    # Each pass over the pods flips them all: first to not Ready, then back.
    name = "pod-#{rem(i - 1, pods)}"
    ready = if rem(div(i - 1, pods), 2) == 0, do: "False", else: "True"
    body = ~s({"status":{"conditions":[{"type":"Ready","status":"#{ready}"}]}})
    path = "/api/v1/namespaces/default/pods/#{name}/status"
    t0 = System.monotonic_time(:nanosecond)

    {:ok, 200, _} =
      Simulator.request(sim, :patch, path, body, "application/strategic-merge-patch+json")

    receive do
      {:pod_dist, ^tag, {:changed, _, %{name: ^name}}} -> System.monotonic_time(:nanosecond) - t0
    after
      10_000 -> raise "no event for #{name}: #{inspect(Process.info(self(), :messages))}"
    end
  end

# Churn: the simulator changes `churn_rate` pods a second; each change carries its time.
changes = churn_rate * churn_seconds
{cpu_vm, cpu_ours, wall} = {Bench.cpu_ns(), Bench.cpu_ns("pod_dist"), System.monotonic_time()}
{:ok, 200, _} = Simulator.fault(sim, "churn", rate: churn_rate, seconds: churn_seconds)

lag_samples =
  for _ <- 1..changes do
    receive do
      {:pod_dist, ^tag, {:changed, _, %{annotations: %{"kube-sim.dev/changed-at-ns" => at}}}} ->
        System.os_time(:nanosecond) - String.to_integer(at)
    after
      10_000 -> raise "churn: an event is missing"
    end
  end

wall = System.convert_time_unit(System.monotonic_time() - wall, :native, :nanosecond)
cpu_vm = (Bench.cpu_ns() - cpu_vm) / wall * 100
cpu_ours = (Bench.cpu_ns("pod_dist") - cpu_ours) / wall * 100

long_schedules =
  Stream.repeatedly(fn ->
    receive do
      {:monitor, pid, :long_schedule, info} -> {pid, info}
    after
      0 -> nil
    end
  end)
  |> Enum.take_while(& &1)

ours = Enum.filter(long_schedules, fn {_, info} -> inspect(info) =~ "PodDist.Native" end)

g = Stats.percentiles(getaddr_samples)
e = Stats.percentiles(event_samples)
c = Stats.percentiles(lag_samples)

IO.puts("""
native: #{pods} pods
  initial sync (list + index): #{Stats.fmt_ns(sync_ns)}
  resolve, #{resolves} calls each:
#{for {label, r} <- resolve_results, do: "    #{label}: p50 #{Stats.fmt_ns(r.p50)} p99 #{Stats.fmt_ns(r.p99)} max #{Stats.fmt_ns(r.max)}\n"}  :inet.getaddr("localhost") for reference: p50 #{Stats.fmt_ns(g.p50)} p99 #{Stats.fmt_ns(g.p99)}
  index: #{health.index_bytes} bytes = #{div(health.index_bytes, max(pods, 1))} bytes/pod; VM RSS growth #{div(rss_growth, max(pods, 1))} bytes/pod (beyond the fixed cost of a first watch)
  API change -> Elixir message (#{trials} trials): p50 #{Stats.fmt_ns(e.p50)} p99 #{Stats.fmt_ns(e.p99)} max #{Stats.fmt_ns(e.max)}
  churn, #{churn_rate} changes/s for #{churn_seconds} s: #{changes} events; index lag p50 #{Stats.fmt_ns(c.p50)} p99 #{Stats.fmt_ns(c.p99)} max #{Stats.fmt_ns(c.max)}
    CPU, % of one core: #{Float.round(cpu_ours, 1)} in the NIF's runtime threads, #{Float.round(cpu_vm, 1)} in the whole VM
  long_schedule > 1 ms: #{length(long_schedules)} in all, #{length(ours)} in PodDist.Native
""")

Simulator.stop(sim)
