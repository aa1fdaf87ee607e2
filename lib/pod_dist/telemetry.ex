defmodule PodDist.Telemetry do
  @moduledoc """
  Every [`:telemetry`](https://hexdocs.pm/telemetry) event PodDist emits.

  `:telemetry` is optional: add `{:telemetry, "~> 1.0"}` to your dependencies (most
  applications have it already, through Phoenix or Ecto) and attach handlers as usual.
  Without it, nothing is emitted and nothing is required. Durations are in `:native`
  time units (`System.convert_time_unit/3`); `monotonic_time` and `system_time` are
  `System.monotonic_time/0` and `System.system_time/0`.

  | event | measurements | metadata | when |
  |---|---|---|---|
  | `[:pod_dist, :strategy, :connect, :start]` | `monotonic_time`, `system_time` | `node`, `topology`, `telemetry_span_context` | `PodDist.Strategy` starts connecting to a node |
  | `[:pod_dist, :strategy, :connect, :stop]` | `monotonic_time`, `duration` | `node`, `topology`, `telemetry_span_context`, `result` (`true`, `false`, `:ignored`, or `:timeout` after `connect_timeout`) | the connect returned or timed out |
  | `[:pod_dist, :strategy, :connect, :exception]` | `monotonic_time`, `duration` | `node`, `topology`, `telemetry_span_context`, `kind`, `reason`, `stacktrace` | the topology's `connect` function raised or exited |
  | `[:pod_dist, :strategy, :disconnect]` | `duration` | `node`, `topology`, `result` (what the topology's `disconnect` returned) | `PodDist.Strategy` disconnected a node (deleted pod, leaving, not eligible) |
  | `[:pod_dist, :strategy, :discovery]` | `nodes` (count) | `pod`, `change` (`:joined` or `:left`), `nodes` (list), `topology` | a pod's nodes join or leave the strategy's view |
  | `[:pod_dist, :strategy, :api_error]` | none | `message`, `topology` | the strategy heard of a new API failure (it keeps the cluster as it is) |
  | `[:pod_dist, :watch, :sync]` | `system_time`, `pods` | `api_url`, `namespaces` | a watch's initial list is in (every namespace): lookups answer from it |
  | `[:pod_dist, :watch, :relist]` | `system_time`, `pods` | `api_url`, `namespaces` | a watch listed everything again (after a `410 Gone`, a reconnect, a restart) |
  | `[:pod_dist, :watch, :api_error]` | `system_time`, `errors` (count since start) | `api_url`, `namespaces`, `error` (a `t:PodDist.Watch.error/0`, or `:throttled` where health reports it), `status` (the HTTP status, else `nil`), `message` | a watch met a new kind of failure (once per kind, not per retry) |
  | `[:pod_dist, :watch, :restart]` | `system_time`, `restarts` (count since start) | `api_url`, `namespaces`, `reason` | a watch's native task died (a bug) and is being restarted with backoff |

  The connect events are a `:telemetry.span/3`-shaped span, emitted from the process
  that runs the connect (each connect runs in its own process). `[:pod_dist, :watch, _]`
  events are emitted once per watch, however many users share it (`PodDist.Epmd`, a
  strategy, `PodDist.Doctor`), by a small process that hears only the watch's status
  (never its pod changes) and reads `PodDist.Watch.health/1` when it does: nothing runs
  on the lookup path `PodDist.Epmd` serves the distribution from. `status` is derived
  from the error kind: `:unauthorized` is 401, `:forbidden` 403, `{:status, code}` is
  `code`, `:throttled` 429.

  ## libcluster's events

  libcluster 3.5's own strategies emit `[:libcluster, :connect_node, :ok | :error]` and
  `[:libcluster, :disconnect_node, :ok | :error]` from its `Cluster.Strategy` helpers.
  `PodDist.Strategy` does not use those helpers (it connects concurrently, each connect
  bounded by a timeout), so it emits the same events itself when libcluster is loaded,
  with the same measurements (`duration`) and metadata (`node`, `topology`, and
  `reason` for `:error`: `:unreachable` when `connect` returned `false`,
  `:not_part_of_network` for `:ignored`, `:timeout`, `{kind, reason}` when it raised;
  for disconnects `:already_disconnected` for `false`, `:not_part_of_network` for
  `:ignored`, else what `disconnect` returned). Dashboards built on libcluster's events
  keep working.
  """

  require Logger

  @doc false
  # Emits `event` when :telemetry is loaded; the one place PodDist calls it.
  @spec execute([atom()], map(), map()) :: :ok
  def execute(event, measurements, metadata) do
    if Code.ensure_loaded?(:telemetry) do
      apply(:telemetry, :execute, [event, measurements, metadata])
    end

    :ok
  end

  @doc false
  # Runs `attempt` (a connect: `{:ok, result}` or `{:exception, kind, reason, stacktrace}`)
  # as the `[:pod_dist, :strategy, :connect]` span, and emits libcluster's event for it.
  # Returns what the strategy logs, and the duration.
  @spec connect(atom(), node(), (() -> {:ok, term()} | {:exception, atom(), term(), list()})) ::
          {term(), integer()}
  def connect(topology, node, attempt) do
    metadata = %{node: node, topology: topology, telemetry_span_context: make_ref()}
    started = System.monotonic_time()

    execute(
      [:pod_dist, :strategy, :connect, :start],
      %{monotonic_time: started, system_time: System.system_time()},
      metadata
    )

    outcome = attempt.()
    ended = System.monotonic_time()
    measurements = %{monotonic_time: ended, duration: ended - started}

    result =
      case outcome do
        {:ok, result} ->
          execute(
            [:pod_dist, :strategy, :connect, :stop],
            measurements,
            Map.put(metadata, :result, result)
          )

          result

        {:exception, kind, reason, stacktrace} ->
          execute(
            [:pod_dist, :strategy, :connect, :exception],
            measurements,
            Map.merge(metadata, %{kind: kind, reason: reason, stacktrace: stacktrace})
          )

          {kind, reason}
      end

    libcluster(:connect_node, topology, node, result, ended - started)
    {result, ended - started}
  end

  @doc false
  @spec disconnect(atom(), node(), term(), integer()) :: :ok
  def disconnect(topology, node, result, duration) do
    execute([:pod_dist, :strategy, :disconnect], %{duration: duration}, %{
      node: node,
      result: result,
      topology: topology
    })

    libcluster(:disconnect_node, topology, node, result, duration)
  end

  # As libcluster's Cluster.Strategy.connect_nodes/4 and disconnect_nodes/4 report.
  defp libcluster(action, topology, node, result, duration) do
    if Code.ensure_loaded?(Cluster.Strategy) do
      metadata = %{node: node, topology: topology}

      case libcluster_reason(action, result) do
        nil ->
          execute([:libcluster, action, :ok], %{duration: duration}, metadata)

        reason ->
          execute(
            [:libcluster, action, :error],
            %{duration: duration},
            Map.put(metadata, :reason, reason)
          )
      end
    end

    :ok
  end

  defp libcluster_reason(_, true), do: nil
  defp libcluster_reason(:connect_node, false), do: :unreachable
  defp libcluster_reason(:disconnect_node, false), do: :already_disconnected
  defp libcluster_reason(_, :ignored), do: :not_part_of_network
  defp libcluster_reason(_, other), do: other

  @doc false
  # Starts the process that reports `watch`'s status as `[:pod_dist, :watch, _]` events
  # (`PodDist.Watch.start/1` calls it for every watch it starts anew). Nothing when
  # :telemetry is not there. The process holds no handle on the watch (it would keep
  # it alive): the native side sends it the watch's health with each status event, and
  # `:stopped` when the watch stops, which ends it.
  @spec report_watch(PodDist.Watch.t()) :: :ok
  def report_watch(%PodDist.Watch{resource: resource}) do
    if Code.ensure_loaded?(:telemetry) do
      tag = make_ref()
      # A proc_lib process (its initial call tells what it is; a crash is reported), which
      # starts reporting once subscribed, or is killed if it cannot be.
      reporter = :proc_lib.spawn(__MODULE__, :reporter, [tag])

      case PodDist.Native.subscribe_status(resource, reporter, tag) do
        :ok -> send(reporter, {:report, tag})
        _ -> Process.exit(reporter, :kill)
      end
    end

    :ok
  end

  @doc false
  @spec reporter(reference()) :: :ok
  def reporter(tag) do
    receive do
      {:report, ^tag} -> report(tag, nil)
    end
  end

  defp report(tag, last_sync) do
    receive do
      # A list that completed as the reporter subscribed is told twice: once is enough.
      {:pod_dist, ^tag, {:synced, %{last_sync: ^last_sync}}} ->
        report(tag, last_sync)

      {:pod_dist, ^tag, {:synced, health}} ->
        report(tag, sync(health, last_sync))

      {:pod_dist, ^tag, {:api_error, message, health}} ->
        failed(health, message)
        report(tag, last_sync)

      {:pod_dist, ^tag, :stopped} ->
        :ok
    end
  end

  defp sync(health, previous) do
    event = if previous == nil, do: :sync, else: :relist

    execute(
      [:pod_dist, :watch, event],
      %{system_time: System.system_time(), pods: health.pods},
      watch_metadata(health)
    )

    health.last_sync
  end

  defp failed(%{error: :crashed} = health, _message) do
    execute(
      [:pod_dist, :watch, :restart],
      %{system_time: System.system_time(), restarts: health.restarts},
      Map.put(watch_metadata(health), :reason, health.last_restart)
    )
  end

  defp failed(health, message) do
    execute(
      [:pod_dist, :watch, :api_error],
      %{system_time: System.system_time(), errors: health.errors},
      Map.merge(watch_metadata(health), %{
        error: health.error,
        status: status(health.error),
        message: message
      })
    )
  end

  defp status(:unauthorized), do: 401
  defp status(:forbidden), do: 403
  defp status(:throttled), do: 429
  defp status({:status, code}), do: code
  defp status(_), do: nil

  defp watch_metadata(health), do: %{api_url: health.api_url, namespaces: health.namespaces}
end
