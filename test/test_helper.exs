# Build the simulator once, before any test starts one.
KubeDist.Simulator.binary()
ExUnit.start()
