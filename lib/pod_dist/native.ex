defmodule PodDist.Native do
  @moduledoc false
  # The NIF functions, from priv/pod_dist_nif.so. Use the wrappers in PodDist.Watch.
  # Bad arguments raise ArgumentError (PodDist.Watch's moduledoc, "Errors"); a panic
  # raises ErlangError :nif_panicked.
  #
  # The library is loaded on the first call, not by @on_load: in a release, PodDist.Epmd
  # calls in here while the kernel starts distribution, before the kernel runs the
  # on_load functions of the modules the boot script loaded (a module whose on_load is
  # pending cannot be called). Nothing here may use Logger or application config.

  @typep handle :: reference()
  # What the lookups take: a binary, charlist or atom; anything else names no pod.
  @typep name :: term()
  @typep miss :: :error | {:error, :ambiguous | :not_synced}

  @spec start_watch(keyword()) :: {:ok, handle(), :new | :shared} | {:error, String.t()}
  def start_watch(options), do: load_and_call(:start_watch, [options])

  @spec check_options(keyword()) :: :ok
  def check_options(options), do: load_and_call(:check_options, [options])

  @spec carries_labels(keyword()) :: boolean()
  def carries_labels(options), do: load_and_call(:carries_labels, [options])

  @spec notify_synced(handle(), pid(), term(), non_neg_integer()) :: :ok
  def notify_synced(handle, pid, tag, timeout_ms),
    do: load_and_call(:notify_synced, [handle, pid, tag, timeout_ms])

  @spec list_pods(handle()) :: [PodDist.Pod.t()]
  def list_pods(handle), do: load_and_call(:list_pods, [handle])

  # One function per answer: the IP of a host, with its pod, or a node's epmd-less port.
  @spec address(handle(), name(), :inet | :inet6) :: {:ok, :inet.ip_address()} | miss()
  def address(handle, host, family), do: load_and_call(:address, [handle, host, family])

  @spec lookup(handle(), name(), :inet | :inet6) ::
          {:ok, :inet.ip_address(), PodDist.Pod.t() | nil} | miss()
  def lookup(handle, host, family), do: load_and_call(:lookup, [handle, host, family])

  @spec node_address(handle(), name(), name(), :inet | :inet6) ::
          {:ok, :inet.ip_address(), {:inet.port_number(), :own | :shared} | nil} | miss()
  def node_address(handle, host, basename, family),
    do: load_and_call(:node_address, [handle, host, basename, family])

  @spec health(handle()) :: PodDist.Watch.health()
  def health(handle), do: load_and_call(:health, [handle])

  # Test hooks: the NIF has them only when built with cargo's `test-hooks` feature, which
  # the NIF compiler in mix.exs enables in MIX_ENV=test, the condition used here.
  if Mix.env() == :test do
    @spec panic_for_test() :: no_return()
    def panic_for_test, do: load_and_call(:panic_for_test, [])
    @spec panic_watch_for_test(handle()) :: :ok
    def panic_watch_for_test(handle), do: load_and_call(:panic_watch_for_test, [handle])
  end

  @spec subscribe(handle(), pid(), term()) :: :ok
  def subscribe(handle, pid, tag), do: load_and_call(:subscribe, [handle, pid, tag])

  @spec subscribe_status(handle(), pid(), term()) :: :ok
  def subscribe_status(handle, pid, tag),
    do: load_and_call(:subscribe_status, [handle, pid, tag])

  # Only reached while the NIF is not loaded: loading replaces every function above.
  defp load_and_call(function, args) do
    case load() do
      :ok -> apply(__MODULE__, function, args)
      {:error, {path, text}} -> not_loaded(path, text)
    end
  end

  # Loads the NIF if it is not yet; `{:error, {path, text}}` (the library's path without
  # its `.so`, and the loader's words) when it cannot be. Never raises: PodDist.Epmd
  # asks at boot, where an exception would stop the kernel.
  @spec load() :: :ok | {:error, {charlist(), charlist()}}
  def load do
    path = :filename.join(priv_dir(), ~c"pod_dist_nif")

    case :erlang.load_nif(path, 0) do
      :ok -> :ok
      # Loaded already (by us or by another process first).
      {:error, {:reload, _}} -> :ok
      {:error, {_reason, text}} -> {:error, {path, text}}
    end
  end

  defp priv_dir do
    case :code.priv_dir(:pod_dist) do
      {:error, :bad_name} ->
        :filename.join(:filename.dirname(:code.which(__MODULE__)), ~c"../priv")

      dir ->
        dir
    end
  end

  defp not_loaded(path, text) do
    :erlang.nif_error(
      {:pod_dist_nif_not_loaded,
       "could not load #{path}.so (#{text}); run `mix compile` (it builds the NIF with cargo)"}
    )
  end
end
