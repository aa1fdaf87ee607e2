# The :telemetry library (an optional peer of pod_dist) cannot be fetched here, so the
# tests run against this stand-in: the smallest faithful implementation of the part of
# telemetry 1.x's API that PodDist and its tests use, with the same contract: handlers
# attached by id to event names, called in the emitting process with
# (event, measurements, metadata, config), detached when they raise; span/3 emits
# `start` (monotonic_time, system_time), then `stop` (duration, monotonic_time) or
# `exception` (kind, reason, stacktrace; re-raised), with a shared
# `telemetry_span_context`. Where the real library is loaded, it is used instead.
unless Code.ensure_loaded?(:telemetry) do
  defmodule :telemetry do
    @moduledoc false

    @key {__MODULE__, :handlers}

    def attach(id, event, function, config), do: attach_many(id, [event], function, config)

    def attach_many(id, events, function, config)
        when is_list(events) and is_function(function, 4) do
      Enum.each(events, &assert_event_name/1)
      handlers = handlers()

      if Enum.any?(handlers, &(&1.id == id)) do
        {:error, :already_exists}
      else
        handler = %{id: id, events: events, function: function, config: config}
        :persistent_term.put(@key, [handler | handlers])
      end
    end

    def detach(id) do
      {gone, kept} = Enum.split_with(handlers(), &(&1.id == id))
      if gone == [], do: {:error, :not_found}, else: :persistent_term.put(@key, kept)
    end

    def execute(event, measurements, metadata) when is_map(measurements) and is_map(metadata) do
      for %{id: id, events: events, function: function, config: config} <- handlers(),
          event in events do
        try do
          function.(event, measurements, metadata, config)
        catch
          kind, reason ->
            detach(id)

            :logger.error(
              "Handler #{inspect(id)} has failed and has been detached: " <>
                Exception.format(kind, reason, __STACKTRACE__)
            )
        end
      end

      :ok
    end

    def span(prefix, start_metadata, function) do
      started = System.monotonic_time()
      context = make_ref()

      execute(
        prefix ++ [:start],
        %{monotonic_time: started, system_time: System.system_time()},
        with_context(start_metadata, context)
      )

      try do
        function.()
      catch
        kind, reason ->
          ended = System.monotonic_time()

          metadata =
            Map.merge(start_metadata, %{kind: kind, reason: reason, stacktrace: __STACKTRACE__})

          execute(
            prefix ++ [:exception],
            %{duration: ended - started, monotonic_time: ended},
            with_context(metadata, context)
          )

          :erlang.raise(kind, reason, __STACKTRACE__)
      else
        {result, stop_metadata} ->
          stop(prefix, started, %{}, stop_metadata, context)
          result

        {result, extra_measurements, stop_metadata} ->
          stop(prefix, started, extra_measurements, stop_metadata, context)
          result
      end
    end

    defp stop(prefix, started, extra, metadata, context) do
      ended = System.monotonic_time()

      execute(
        prefix ++ [:stop],
        Map.merge(extra, %{duration: ended - started, monotonic_time: ended}),
        with_context(metadata, context)
      )
    end

    defp with_context(%{telemetry_span_context: _} = metadata, _context), do: metadata
    defp with_context(metadata, context), do: Map.put(metadata, :telemetry_span_context, context)

    defp handlers, do: :persistent_term.get(@key, [])

    defp assert_event_name(name) do
      unless is_list(name) and name != [] and Enum.all?(name, &is_atom/1),
        do: :erlang.error(:badarg, [name])
    end
  end
end
