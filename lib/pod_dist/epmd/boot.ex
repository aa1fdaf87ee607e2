defmodule PodDist.Epmd.Boot do
  @moduledoc false
  # What PodDist.Epmd settles when the distribution starts it (`start_link/0`): the mode,
  # the default epmd-less port, the one deadline for every wait for the first pod list,
  # and the pod watch, or the problem that left the node without one.
  #
  # One :persistent_term entry, written only here: every connect reads it, and a running
  # distribution cannot change its mode. The kernel starts the module once per
  # distribution start; a watch started before is kept.
  #
  # Do no harm: whatever fails here, the node boots, as with the stock erl_epmd.

  alias PodDist.Epmd.{Env, Fallback}

  @enforce_keys [:mode, :dist_port, :sync_timeout, :deadline]
  defstruct [:mode, :dist_port, :sync_timeout, :deadline, watch: nil, problem: nil]

  @type t :: %__MODULE__{
          mode: PodDist.Epmd.mode(),
          dist_port: :inet.port_number(),
          sync_timeout: non_neg_integer(),
          deadline: integer(),
          watch: PodDist.Watch.t() | nil,
          problem: Fallback.problem() | nil
        }

  @key PodDist.Epmd

  @doc "Reads the environment, starts the watch (unless running already) and stores it all."
  @spec start() :: t()
  def start do
    sync_timeout = Env.sync_timeout()

    state = %__MODULE__{
      mode: Env.mode(),
      dist_port: Env.dist_port(),
      sync_timeout: sync_timeout,
      deadline: now() + sync_timeout
    }

    state =
      case watch() || start_watch() do
        %PodDist.Watch{} = watch ->
          %{state | watch: watch}

        {:error, problem} ->
          instead = Fallback.instead(state.mode, state.dist_port, Env.listen_port())
          # Never standard_error at boot (it stops the kernel); the VM's own console is safe.
          :erlang.display_string(Fallback.console(problem, instead))
          %{state | problem: problem}
      end

    :persistent_term.put(@key, state)
    state
  end

  @doc "The state, once the distribution has started PodDist.Epmd."
  @spec get() :: t() | nil
  def get, do: :persistent_term.get(@key, nil)

  @spec watch() :: PodDist.Watch.t() | nil
  def watch do
    case get() do
      %__MODULE__{watch: watch} -> watch
      nil -> nil
    end
  end

  @doc "The epmd-less default port: as settled at start, else from the environment."
  @spec dist_port() :: :inet.port_number()
  def dist_port do
    case get() do
      %__MODULE__{dist_port: port} -> port
      nil -> Env.dist_port()
    end
  end

  @doc """
  Waits for the first pod list until the deadline settled at start: true once it is in.
  Every caller shares that deadline, so a boot waits once at most; past it, nobody
  waits. The wait is a `receive` (the NIF messages the caller): no scheduler is held.
  """
  @spec await_sync(PodDist.Watch.t()) :: boolean()
  def await_sync(watch) do
    remaining = get().deadline - now()
    remaining > 0 and PodDist.Watch.await_synced(watch, remaining)
  end

  @doc "Loads the NIF, or says what is wrong with it and the fix."
  @spec load_nif() :: :ok | {:error, Fallback.problem()}
  def load_nif do
    case PodDist.Watch.load_nif() do
      :ok ->
        :ok

      {:error, {path, text}} ->
        # :prim_file: the kernel's file server is not up yet while distribution starts.
        exists? = match?({:ok, _}, :prim_file.read_file_info(~c"#{path}.so"))
        {:error, Fallback.nif(path, text, exists?)}
    end
  end

  # Whatever fails here, the node must boot: every failure becomes a problem to report.
  defp start_watch do
    with :ok <- load_nif() do
      case PodDist.Watch.start(Env.watch_options()) do
        {:ok, watch} -> watch
        {:error, reason} -> {:error, Fallback.watch(reason)}
      end
    end
  rescue
    # A bad POD_DIST_* value: the message names the option.
    error in ArgumentError -> {:error, Fallback.watch(Exception.message(error))}
  catch
    kind, reason -> {:error, Fallback.watch(Exception.format_banner(kind, reason))}
  end

  defp now, do: System.monotonic_time(:millisecond)
end
