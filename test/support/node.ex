defmodule PodDist.Test.Node do
  @moduledoc """
  A real BEAM node for multi-pod tests: an OS process started with
  `-sname <basename>@<pod>`, `-epmd_module Elixir.PodDist.Epmd`, listening on its
  pod's IP, and configured through the same environment variables a pod would use.
  `eval/2` runs Elixir code in it.

      node = Node.start!(sim, "app", "pod-a", ip: "127.0.1.1", mode: :epmdless)
      {:ok, true} = Node.eval(node, ~s(Node.connect(:"app@pod-b")))
  """

  alias PodDist.Simulator

  defstruct [:port, :name, :os_pid]

  @cookie "pod_dist_test"

  @doc """
  Starts a node. Options: `:ip` (the pod IP it listens on, required), `:mode`
  (`:epmd` or `:epmdless`), `:epmd_port` (epmd mode: the test's own epmd), `:env`
  (extra environment), `:namespaces`, `:netns` (run inside that network namespace),
  `:api_url` (how the node reaches the simulator), `:name_flag` (`"-sname"` or `"-name"`),
  `:host` (the host part, default the pod name), `:extra_args`, `:pod_dist_ebin` (load
  pod_dist from this ebin instead of the build's: its `../priv` is where the NIF is
  looked for).
  """
  def start!(%Simulator{} = sim, basename, pod, opts) do
    case start(sim, basename, pod, opts) do
      {:ok, node} -> node
      {:error, reason, output} -> raise "node did not come up: #{inspect(reason)}\n#{output}"
    end
  end

  @doc """
  Like `start!/4`, but `{:error, reason, console_output}` when the node does not come up
  (e.g. it refuses to start distribution).
  """
  def start(%Simulator{} = sim, basename, pod, opts) do
    {executable, args, env} =
      command(
        sim,
        basename,
        pod,
        Keyword.put(opts, :extra_args, [
          "-noshell",
          "-eval",
          "'Elixir.PodDist.Test.NodeRepl':start()." | Keyword.get(opts, :extra_args, [])
        ])
      )

    port =
      Port.open({:spawn_executable, executable}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 1_000_000},
        args: args,
        env: env
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    node = %__MODULE__{
      port: port,
      name: :"#{basename}@#{Keyword.get(opts, :host, pod)}",
      os_pid: os_pid
    }

    # The REPL answers once the node is up (distribution included).
    case eval(node, "Node.self()", 30_000) do
      {:ok, name} when name == node.name ->
        {:ok, node}

      other ->
        stop(node)
        {:error, {node.name, other}, output(node)}
    end
  end

  @doc """
  What the node printed on its console (standard output and error) so far, besides
  the REPL's answers: collected while `eval/3` waits, and now.
  """
  def output(%__MODULE__{port: port}) do
    collect_output(port)
    Process.get({__MODULE__, :output, port}, []) |> Enum.reverse() |> Enum.join("\n")
  end

  # Answers nobody waits for any more (their eval timed out) are dropped.
  defp collect_output(port) do
    receive do
      {^port, {:data, {_, line}}} ->
        line |> answer() |> elem(0) |> then(&keep_output(port, &1))
        collect_output(port)
    after
      0 -> :ok
    end
  end

  # A console line: what the node printed, and the REPL's answer if one ends the line.
  defp answer(line) do
    case :binary.split(line, "KDREPL ") do
      [output, answer] ->
        [id, answer] = String.split(answer, " ", parts: 2)
        {output, {id, answer}}

      [output] ->
        {output, nil}
    end
  end

  defp keep_output(_port, ""), do: :ok

  defp keep_output(port, line),
    do:
      Process.put({__MODULE__, :output, port}, [
        line | Process.get({__MODULE__, :output, port}, [])
      ])

  @doc """
  Opens a remote shell (`erl -remsh`, as `bin/app remote` does) from `pod` onto
  `target`, under a pseudo-terminal, types `input` and returns what the terminal
  showed. Options as `start!/4` (`:ip`, `:mode`, `:netns`, ...).
  """
  def remote_shell(%Simulator{} = sim, target, pod, input, opts) do
    {executable, args, env} =
      command(sim, "rem", pod, Keyword.put(opts, :extra_args, ["-remsh", to_string(target)]))

    terminal([executable | args], env, ~r/\(#{target}\)1> /, input)
  end

  @doc """
  Runs `command` under a pseudo-terminal (`script`), as a person at a terminal would:
  once the screen matches `prompt`, types `input`, and returns what the terminal showed
  (about 3 s after typing). `env` is a list of `{charlist, charlist}`.
  """
  def terminal(command, env, prompt, input) do
    shell = Enum.map_join(command, " ", &"'#{&1}'")

    port =
      Port.open({:spawn_executable, System.find_executable("script")}, [
        :binary,
        :stderr_to_stdout,
        args: ["-qfec", shell, "/dev/null"],
        env: env
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    # Type only once the prompt shows (for a remote shell: it has connected).
    shown = collect(port, prompt, System.monotonic_time(:millisecond) + 20_000, "")
    Port.command(port, input)
    output = collect(port, nil, System.monotonic_time(:millisecond) + 3_000, shown)
    System.cmd("pkill", ["-9", "-P", to_string(os_pid)], stderr_to_stdout: true)
    output
  end

  # Terminal output until `until` matches (or, with `nil`, until the deadline).
  defp collect(port, until, deadline, acc) do
    if until && acc =~ until do
      acc
    else
      receive do
        {^port, {:data, data}} -> collect(port, until, deadline, acc <> data)
      after
        max(deadline - System.monotonic_time(:millisecond), 0) -> acc
      end
    end
  end

  # The erl command line and environment of a node in `pod`, inside its namespace if any.
  defp command(sim, basename, pod, opts) do
    ip = Keyword.fetch!(opts, :ip)
    mode = Keyword.get(opts, :mode, :epmdless)
    {:ok, tuple} = :inet.parse_address(String.to_charlist(ip))

    args =
      [
        Keyword.get(opts, :name_flag, "-sname"),
        "#{basename}@#{Keyword.get(opts, :host, pod)}",
        "-setcookie",
        @cookie,
        "-epmd_module",
        "Elixir.PodDist.Epmd",
        "-kernel",
        "inet_dist_use_interface",
        inspect(tuple),
        "-pa",
        Path.join(:code.lib_dir(:elixir), "ebin"),
        "-pa",
        Path.join(:code.lib_dir(:logger), "ebin"),
        "-pa",
        Keyword.get_lazy(opts, :pod_dist_ebin, fn ->
          :code.lib_dir(:pod_dist) |> Path.join("ebin")
        end)
      ] ++
        if(mode == :epmdless, do: ["-start_epmd", "false"], else: []) ++
        Keyword.get(opts, :extra_args, [])

    env =
      [
        {"POD_DIST_MODE", Atom.to_string(mode)},
        {"POD_DIST_API_URL", Keyword.get(opts, :api_url, sim.url)},
        {"POD_DIST_CA_FILE", Path.join(sim.dir, "ca.crt")},
        {"POD_DIST_TOKEN_FILE", Path.join(sim.dir, "serviceaccount/token")},
        {"POD_DIST_NAMESPACES", Keyword.get(opts, :namespaces, "default")},
        {"ERL_EPMD_PORT", to_string(Keyword.get(opts, :epmd_port, 4369))}
      ] ++ Keyword.get(opts, :env, [])

    # Inside a pod's network namespace when one is given.
    {executable, args} =
      case opts[:netns] do
        nil ->
          {System.find_executable("erl"), args}

        ns ->
          {System.find_executable("ip"),
           ["netns", "exec", ns, System.find_executable("erl") | args]}
      end

    env = Enum.map(env, fn {k, v} -> {String.to_charlist(k), String.to_charlist(v)} end)
    {executable, args, env}
  end

  @doc "Evaluates Elixir `code` in the node; `{:ok, value}` or `{:error, {kind, reason}}`."
  def eval(%__MODULE__{port: port}, code, timeout \\ 15_000) do
    # Base64 keeps multi-line code on the one line the REPL reads.
    id = Integer.to_string(System.unique_integer([:positive]))
    Port.command(port, [id, " ", Base.encode64(code), "\n"])
    await_answer(port, id, timeout)
  end

  defp await_answer(port, id, timeout) do
    receive do
      {^port, {:data, {_, line}}} ->
        case answer(line) do
          {output, {^id, answer}} ->
            keep_output(port, output)
            answer |> Base.decode64!() |> :erlang.binary_to_term()

          {output, _none_or_stale} ->
            keep_output(port, output)
            await_answer(port, id, timeout)
        end

      {^port, {:exit_status, status}} ->
        {:error, {:node_exited, status}}
    after
      timeout -> {:error, :timeout}
    end
  end

  @doc "Stops the node (closing its standard input ends the REPL and the VM)."
  def stop(%__MODULE__{port: port, os_pid: os_pid}) do
    if Port.info(port), do: Port.close(port)
    # Make sure: a node stuck in boot would not read its standard input.
    System.cmd("kill", ["-9", to_string(os_pid)], stderr_to_stdout: true)
    :ok
  end
end
