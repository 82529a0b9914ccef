"""Measuring one cell: the order of its steps (cellrun), the steps themselves (phases), its shard
rows (rows), the timed loop (timing), the statistics (stats), the fp32 reference for accuracy
(reference), bringing the GPU clock up (gpu_clock), and the readings beside the clock (telemetry:
host memory; GPU memory, power, clocks).

Nothing here knows a backend beyond the calls every backend has (inferbench.backends.base)."""
