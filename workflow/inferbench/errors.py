"""Errors meant for people: caught by the CLI and printed as one message, never a traceback; and a
cell that cannot run, recorded with its reason."""

import errno


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


# A full disk (or a used-up quota) says nothing about the job's own work: such a job records no
# result (no shard, no manifest), so that the next run, after space is freed, does it again.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_TEXT = "No space left on device"
# The exit code of a command stopped by a full disk: the code `verify` gives for out of memory or
# disk, and how a job tells that its worker stopped for it.
NO_SPACE_EXIT = 3


def is_no_space(exc: BaseException) -> bool:
    """A write that failed for want of disk space. pyarrow raises OSError without an errno, with
    the C library's words in its message."""
    return isinstance(exc, OSError) and (exc.errno in NO_SPACE_ERRNOS or NO_SPACE_TEXT in str(exc)
                                         or "Disk quota exceeded" in str(exc))
