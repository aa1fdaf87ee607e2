defmodule PodDist.Epmd.Env do
  @moduledoc false
  # The POD_DIST_* variables PodDist.Epmd reads (its moduledoc is their reference). The
  # OS environment, because the epmd module starts with the kernel, before any
  # application config is loaded.

  @default_port 4370
  @default_sync_timeout 5_000

  @spec mode() :: PodDist.Epmd.mode()
  def mode do
    case System.get_env("POD_DIST_MODE", "epmd") do
      "epmdless" -> :epmdless
      _ -> :epmd
    end
  end

  @doc "Epmd-less: the port of a node its pod does not declare."
  @spec dist_port() :: :inet.port_number()
  def dist_port, do: integer("POD_DIST_DIST_PORT", @default_port)

  @doc "Epmd-less: this container's own listen port, when set to a usable one."
  @spec listen_port() :: :inet.port_number() | nil
  def listen_port do
    case integer("POD_DIST_LISTEN_PORT", nil) do
      port when is_integer(port) and port in 1..65_535 -> port
      _ -> nil
    end
  end

  @spec sync_timeout() :: non_neg_integer()
  def sync_timeout, do: integer("POD_DIST_SYNC_TIMEOUT_MS", @default_sync_timeout)

  @doc "The `PodDist.Watch` options asked for; `PodDist.Watch` validates them."
  @spec watch_options() :: keyword()
  def watch_options do
    namespaces =
      case System.get_env("POD_DIST_NAMESPACES") do
        nil -> nil
        "*" -> :all
        list -> list |> String.split(",", trim: true) |> Enum.map(&String.trim/1)
      end

    [
      namespaces: namespaces,
      label_selector: System.get_env("POD_DIST_LABEL_SELECTOR"),
      service: System.get_env("POD_DIST_SERVICE"),
      slice_managed_by: System.get_env("POD_DIST_SLICE_MANAGED_BY"),
      cluster_domain: System.get_env("POD_DIST_CLUSTER_DOMAIN"),
      api_url: System.get_env("POD_DIST_API_URL"),
      ca_file: System.get_env("POD_DIST_CA_FILE"),
      token_file: System.get_env("POD_DIST_TOKEN_FILE"),
      service_account_dir: System.get_env("POD_DIST_SERVICE_ACCOUNT_DIR"),
      kubeconfig: System.get_env("POD_DIST_KUBECONFIG")
    ]
    |> Enum.reject(fn {_, value} -> is_nil(value) end)
  end

  defp integer(name, default) do
    case Integer.parse(System.get_env(name, "")) do
      {value, ""} when value >= 0 -> value
      _ -> default
    end
  end
end
