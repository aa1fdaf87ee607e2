defmodule PodDist.Epmd.Mode do
  @moduledoc false
  # What each of PodDist.Epmd's modes implements: the `-epmd_module` callbacks the
  # distribution calls (OTP's erl_epmd has the same), which PodDist.Epmd hands over.

  @type name :: atom() | charlist() | String.t()
  @type host :: atom() | charlist() | String.t() | :inet.ip_address()
  @type family :: :inet | :inet6
  @type port_answer ::
          {:port, :inet.port_number(), pos_integer()} | :noport | :closed | {:error, term()}

  @callback start_link() :: {:ok, pid()} | :ignore | {:error, term()}
  @callback register_node(name(), :inet.port_number(), family()) ::
              {:ok, integer()} | {:error, term()}
  @callback listen_port_please(name(), host()) :: {:ok, :inet.port_number()} | {:error, term()}
  @callback address_please(name(), host(), family()) ::
              {:ok, :inet.ip_address()}
              | {:ok, :inet.ip_address(), :inet.port_number(), pos_integer()}
              | {:error, term()}
  @callback port_please(name(), host(), timeout()) :: port_answer()
  @callback names(host()) :: {:ok, [{charlist(), :inet.port_number()}]} | {:error, term()}
end
