defmodule KubeDist.Native do
  @moduledoc false
  # The NIF functions, loaded from priv/kube_dist_nif.so. Use the wrappers in
  # KubeDist.Watch; these take and return raw terms.
  #
  # Loading must work during kernel boot (KubeDist.Epmd runs before any application
  # starts), so nothing here may use Logger or application config.

  @on_load :load_nif

  @doc false
  def load_nif do
    path = :filename.join(priv_dir(), ~c"kube_dist_nif")

    case :erlang.load_nif(path, 0) do
      :ok ->
        :ok

      {:error, {_reason, text}} ->
        # Keep the module loadable so callers get a clear error instead of :undef.
        :persistent_term.put({__MODULE__, :load_error}, {path, text})
        :ok
    end
  end

  defp priv_dir do
    case :code.priv_dir(:kube_dist) do
      {:error, :bad_name} ->
        :filename.join(:filename.dirname(:code.which(__MODULE__)), ~c"../priv")

      dir ->
        dir
    end
  end

  @doc false
  def load_error, do: :persistent_term.get({__MODULE__, :load_error}, nil)

  def start_watch(_options), do: not_loaded()
  def await_synced(_handle, _timeout_ms), do: not_loaded()
  def list_pods(_handle), do: not_loaded()
  def resolve(_handle, _host, _with_pod), do: not_loaded()
  def health(_handle), do: not_loaded()
  def panic_for_test, do: not_loaded()
  def subscribe(_handle, _pid, _tag), do: not_loaded()

  defp not_loaded do
    {path, text} = load_error() || {~c"priv/kube_dist_nif", ~c"not loaded"}

    :erlang.nif_error(
      {:kube_dist_nif_not_loaded,
       "could not load #{path}.so (#{text}); run `mix compile` (it builds the NIF with cargo)"}
    )
  end
end
