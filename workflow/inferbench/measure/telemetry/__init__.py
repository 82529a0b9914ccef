"""Measurements beside the clock: host memory, and GPU memory, power, clocks through NVML."""
