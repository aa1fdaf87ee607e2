defmodule PodDist.DemoTest do
  # The README's main command, run as a user runs it, in both of its worlds; and killed
  # halfway, which must leave nothing behind either.
  use ExUnit.Case, async: false

  @moduletag timeout: 180_000

  defp demo(env, args \\ []),
    do: System.cmd("mix", ["pod_dist.demo" | args], env: env, stderr_to_stdout: true)

  defp assert_story(out) do
    # kubectl applies the manifests to the simulator (checked offline without kubectl).
    assert out =~ ~r{deployment.apps/shop-api created|Deployment/default/shop-api}

    assert out =~
             ~r/shop-\w+-\w+ +198\.51\.100\.1 +api@shop-\w+-\w+ worker@shop-\w+-\w+|127\.0\.1\.1/

    assert out =~ "Full mesh of 3 nodes in"
    assert out =~ ~r/api@shop-api-\w+-\w+ joined every node in \d+ ms/
    assert out =~ ~r/api@shop-api-\w+-\w+ left every node in \d+ ms/

    # The three nodes that remain are still a full mesh: each lists two peers.
    [_, after_leave] = String.split(out, ~r/==> Deleting pod.*\n/, parts: 2)

    for line <- after_leave |> String.split("\n") |> Enum.take(3),
        do: assert(length(String.split(line)) == 4, "not a full mesh: #{line}")

    assert out =~ "Stopped every node, the simulator and every namespace."
  end

  defp leftovers(pattern) do
    {netns, 0} = System.cmd("ip", ["netns", "list"], stderr_to_stdout: true)
    {procs, _} = System.cmd("pgrep", ["-f", pattern])
    {netns |> String.split("\n") |> Enum.filter(&(&1 =~ pattern)), String.split(procs)}
  end

  @tag :netns
  test "as root: pods are network namespaces; nothing is left afterwards" do
    {out, 0} = demo([{"POD_DIST_DEMO_LOOPBACK", nil}])
    assert_story(out)
    assert out =~ ~r/shop-\w+-\w+ +198\.51\.100\.1 +api@shop-\w+-\w+ worker@shop-\w+-\w+/
    [_, id] = Regex.run(~r/network namespace (kd[0-9a-z]+)-hub/, out)
    assert leftovers("#{id}-") == {[], []}
  end

  @tag :netns
  test "--source slices: the same story from a headless Service's EndpointSlices alone" do
    {out, 0} = demo([{"POD_DIST_DEMO_LOOPBACK", nil}], ["--source", "slices"])
    assert out =~ "kubectl apply -k examples/kubernetes-slices"
    assert out =~ "service/shop-dist created"
    assert out =~ "grants get/list/watch on endpointslices only, nothing on pods"
    assert_story(out)
  end

  test "not root: pods on loopback addresses, epmd-less" do
    {out, 0} = demo([{"POD_DIST_DEMO_LOOPBACK", "1"}])
    assert_story(out)
    assert out =~ ~r/shop-\w+-\w+ +127\.0\.1\.1 +api@shop-\w+-\w+ worker@shop-\w+-\w+/
    assert out =~ "(pods on loopback addresses)"
  end

  @tag :netns
  test "killed halfway, it still leaves no namespace and no node behind" do
    port =
      Port.open({:spawn_executable, System.find_executable("mix")}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 10_000},
        args: ["pod_dist.demo"]
      ])

    {:os_pid, pid} = Port.info(port, :os_pid)
    id = await_line(port, ~r/network namespace (kd[0-9a-z]+)-hub/)
    await_line(port, ~r/Full mesh/)
    assert {[_ | _], [_ | _]} = leftovers("#{id}-")

    System.cmd("kill", ["-9", to_string(pid)])
    assert_receive {^port, {:exit_status, _}}, 10_000
    assert eventually_clean("#{id}-", 50)
  end

  defp await_line(port, regex) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        case Regex.run(regex, line) do
          nil -> await_line(port, regex)
          [_] -> :ok
          [_, capture] -> capture
        end
    after
      60_000 -> flunk("the demo never printed #{inspect(regex)}")
    end
  end

  defp eventually_clean(pattern, tries) do
    cond do
      leftovers(pattern) == {[], []} -> true
      tries == 0 -> flunk("left behind: #{inspect(leftovers(pattern))}")
      true -> Process.sleep(100) && eventually_clean(pattern, tries - 1)
    end
  end
end
