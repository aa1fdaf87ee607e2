defmodule PodDist do
  @moduledoc """
  Erlang distribution that works natively on Kubernetes.

  PodDist watches pods through the Kubernetes API in native code and keeps a small
  pod index, from which it answers in microseconds. Three parts use it:

    * `PodDist.Epmd`, the `-epmd_module`: nodes keep pod-name names (`app@web-0`) and
      every node can reach them; an epmd-less mode for several nodes in one pod.
    * `PodDist.Strategy`, a libcluster strategy (or a plain child): pods that turn
      Ready are connected within milliseconds, deleted ones disconnected, nothing polled.
    * `PodDist.Watch`, the pod index itself: list, resolve and subscribe to pods.

  When `Node.list()` is unexpectedly empty, run `doctor/0` in the node:

      $ kubectl exec -it deploy/shop -- bin/shop rpc "PodDist.doctor()"
  """

  @doc """
  Checks everything clustering depends on, prints a pass/fail line per check with the
  fix for each failure, and returns `:ok` when nothing failed or `{:error, failed}`.
  See `PodDist.Doctor` for the checks; `config` is an explicit `PodDist.Strategy`
  config (by default the running strategy's, else `PodDist.Epmd`'s).
  """
  @spec doctor(keyword() | nil) :: :ok | {:error, [PodDist.Doctor.check()]}
  def doctor(config \\ nil) do
    checks = PodDist.Doctor.run(config)
    IO.write(PodDist.Doctor.format(checks))

    case Enum.filter(checks, &(&1.status == :fail)) do
      [] -> :ok
      failed -> {:error, failed}
    end
  end
end
