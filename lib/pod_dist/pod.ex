defmodule PodDist.Pod do
  @moduledoc """
  A pod as a `PodDist.Watch` indexes it. The native side builds it (from its own pod
  record, the fields below in the same order); `PodDist.Watch.pods/1`, `lookup/3` and
  subscribers' events hand it out.

  With the EndpointSlice source (`:service`), a pod is what its endpoint says: `labels`
  and `annotations` are empty (see `PodDist.Watch.labels?/1`), `phase` is `:running`
  while the endpoint serves, else `:pending`.
  """

  @enforce_keys [:uid, :namespace, :name]
  defstruct [
    :uid,
    :namespace,
    :name,
    ip: nil,
    ips: [],
    hostname: nil,
    subdomain: nil,
    node_name: nil,
    phase: :unknown,
    ready: false,
    terminating: false,
    labels: %{},
    annotations: %{},
    ports: [],
    hosts: %{pod_name: nil, ip: nil, dashed_ip: nil, hostname_fqdn: nil},
    dist_ports: []
  ]

  @typedoc """
  A pod: `metadata` (`uid`, `namespace`, `name`, `labels`, `annotations` without
  kubectl's last-applied copy), its first IP and all of them (`status.podIPs`),
  `spec.hostname`, `spec.subdomain` and `spec.nodeName`, `status.phase`, whether its
  Ready condition is true and whether it is terminating (`metadata.deletionTimestamp`
  set), its declared container ports, the host part of its node names in each form
  (`t:hosts/0`), and the nodes it declares for epmd-less mode (`dist_ports`: `{basename,
  port}` for a port named `dist-<basename>`, `{:any, port}` for one named `dist`).
  """
  @type t :: %__MODULE__{
          uid: String.t(),
          namespace: String.t(),
          name: String.t(),
          ip: :inet.ip_address() | nil,
          ips: [:inet.ip_address()],
          hostname: String.t() | nil,
          subdomain: String.t() | nil,
          node_name: String.t() | nil,
          phase: phase(),
          ready: boolean(),
          terminating: boolean(),
          labels: %{String.t() => String.t()},
          annotations: %{String.t() => String.t()},
          ports: [port_spec()],
          hosts: hosts(),
          dist_ports: [{String.t() | :any, :inet.port_number()}]
        }

  @typedoc "`status.phase`."
  @type phase :: :pending | :running | :succeeded | :failed | :unknown

  @typedoc "A declared container port: its name (if any), number and container."
  @type port_spec :: %{name: String.t() | nil, port: :inet.port_number(), container: String.t()}

  @typedoc """
  The host part of a pod's node names in each form (see `PodDist.Strategy`'s `:host`),
  `nil` where the pod has none: `pod_name` for a name that is not one DNS label,
  `ip` and `dashed_ip` for a pod without an IP or on the host network (its IP is its
  node's), `hostname_fqdn` unless the pod has both `spec.hostname` and `spec.subdomain`
  (cluster DNS has no hostname record for it otherwise). Each resolves back to the pod.
  """
  @type hosts :: %{
          pod_name: String.t() | nil,
          ip: String.t() | nil,
          dashed_ip: String.t() | nil,
          hostname_fqdn: String.t() | nil
        }
end
