"""Measuring one cell: the order of its steps (cellrun), the steps themselves (phases), what they
hand on (results), its shard rows (rows), the timed loop (timing), the trackers a timed window
stacks (window: CPU pinning on the fastest CPU (hostcpu), launch cost, energy (energy)), the
statistics (stats), the fp32 reference and the error against it (reference, accuracy), bringing
the GPU clock up (gpu_clock), the cell's log (celllog), and the readings beside the clock
(telemetry: host memory; GPU memory, power, clocks).

Nothing here knows a backend beyond the calls every backend has (inferbench.backends.base)."""
