# Build the simulator once, before any test starts one.
KubeDist.Simulator.binary()
Logger.configure(level: :warning)
ExUnit.start()
