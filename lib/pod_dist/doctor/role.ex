defmodule PodDist.Doctor.Role do
  @moduledoc """
  The Role (or ClusterRole) and binding a watch needs, as YAML to apply: the one home
  of the RBAC fix. The watch's own 403 message names the verbs and the resource and
  points here through `PodDist.doctor()`.
  """

  @doc """
  The manifests granting `get`, `list` and `watch` on pods (on EndpointSlices when
  `service`, the slice source, is set) in `namespace` (`nil`: every namespace, through a
  ClusterRole) to `service_account`, the `{namespace, name}` the API named when it
  denied access (`nil`: the namespace's `default` account).
  """
  @spec yaml(String.t() | nil, {String.t(), String.t()} | nil, String.t() | nil) :: String.t()
  def yaml(namespace, service_account, service) do
    {account_ns, account} = service_account || {namespace || "default", "default"}

    {group, resource} = if service, do: {"discovery.k8s.io", "endpointslices"}, else: {"", "pods"}

    {kind, binding, meta} =
      if namespace,
        do: {"Role", "RoleBinding", "\n  namespace: #{namespace}"},
        else: {"ClusterRole", "ClusterRoleBinding", ""}

    """
    apply this (kubectl apply -f -):
    apiVersion: rbac.authorization.k8s.io/v1
    kind: #{kind}
    metadata:
      name: pod-dist#{meta}
    rules:
      - apiGroups: ["#{group}"]
        resources: ["#{resource}"]
        verbs: ["get", "list", "watch"]
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: #{binding}
    metadata:
      name: pod-dist#{meta}
    roleRef:
      apiGroup: rbac.authorization.k8s.io
      kind: #{kind}
      name: pod-dist
    subjects:
      - kind: ServiceAccount
        name: #{account}
        namespace: #{account_ns}
    """
  end
end
