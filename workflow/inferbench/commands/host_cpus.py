"""`inferbench host-cpus`: how fast each CPU of this machine runs right now, pass after pass."""

from __future__ import annotations

from inferbench.errors import UserError

HELP = ("time a short loop on each CPU this process may use, several passes: shows whether the "
        "host's CPUs run alike (bare metal) or not (a shared virtual machine), which is what "
        "measurement.pin_fastest_cpu is for")


def add_arguments(parser) -> None:
    parser.add_argument("--passes", type=int, default=6, help="passes over every CPU (default 6)")
    parser.add_argument("--adds", type=int, default=20_000,
                        help="additions in the timed Python loop (default 20,000: about 0.5 ms on a fast core)")


def measure(passes: int, adds: int) -> dict[int, list[float]]:
    """{cpu: [microseconds per pass]}, the CPUs timed in turn within each pass."""
    import os

    from inferbench.measure.hostcpu import can_pin, loop_us

    if not can_pin():
        raise UserError("this platform cannot pin a thread to a CPU (no sched_setaffinity)")
    cpus = sorted(os.sched_getaffinity(0))
    times = {cpu: [] for cpu in cpus}
    try:
        for _ in range(passes):
            for cpu in cpus:
                os.sched_setaffinity(0, {cpu})
                times[cpu].append(loop_us(adds=adds))
    finally:
        os.sched_setaffinity(0, set(cpus))
    return times


def run(args) -> int:
    if args.passes < 1 or args.adds < 1:
        raise UserError("--passes and --adds must be at least 1")
    times = measure(args.passes, args.adds)
    fastest = min(min(v) for v in times.values())
    print(f"microseconds for {args.adds:,} additions in Python, per CPU and pass "
          f"(x: slower than the fastest reading, {fastest:.0f} us)")
    for cpu, values in times.items():
        print(f"cpu {cpu:>3}: " + "  ".join(f"{v:7.0f} x{v / fastest:4.2f}" for v in values))
    per_pass = [[v[i] for v in times.values()] for i in range(args.passes)]
    ratios = [max(p) / min(p) for p in per_pass]
    print(f"slowest over fastest CPU within a pass: {min(ratios):.2f} to {max(ratios):.2f}. Close to 1: the "
          "CPUs run alike. Well above (a shared virtual machine): launch-bound GPU cells depend on the CPU "
          "that launches them; keep measurement.pin_fastest_cpu on (docs/method.md).")
    return 0
