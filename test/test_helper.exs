Logger.configure(level: :warning)
# Who the strategy tests' recorder has "connected"; owned by this process, which outlives them.
:ets.new(PodDist.Test.Recorder, [:public, :named_table, :set])

# Multi-pod tests create network namespaces: root only. CI runs as root.
{uid, 0} = System.cmd("id", ["-u"])

if String.trim(uid) != "0" do
  IO.puts("not root: skipping the :netns tests (pods as network namespaces)")
  ExUnit.configure(exclude: [:netns])
else
  PodDist.Test.Cluster.sweep_stale()
end

ExUnit.start()
