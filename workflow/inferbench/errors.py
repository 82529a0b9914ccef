"""Errors meant for people: caught by the CLI and printed as one message, never a traceback; and a
cell that cannot run, recorded with its reason."""


class UserError(Exception):
    """Bad input: the message names what is wrong and what to do."""


class Skip(Exception):
    """The cell cannot run here (missing library, unsupported combination): recorded as `skipped`.
    Here, at the bottom, so that what raises it (a device check, a backend) and what records it
    (the cell runner) need not import each other."""


# How allocation failures read, on the GPU and on the CPU: torch's "CUDA out of memory", ONNX
# Runtime's "Failed to allocate memory", torch's CPU "DefaultCPUAllocator: can't allocate memory",
# and the C library's ENOMEM ("Cannot allocate memory"). Lower case.
OOM_PHRASES = ("out of memory", "failed to allocate memory", "can't allocate memory", "cannot allocate memory")
