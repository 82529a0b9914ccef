"""Helpers shared by the backends that run a torch module (eager, TorchScript, compiled)."""

from __future__ import annotations

from inferbench.backends.base import Runner, torch_dtype


def resolve_channels_last(option, device: str) -> bool:
    return (device == "cuda") if option is None else bool(option)


def set_tf32(enabled: bool) -> None:
    import torch

    # PyTorch lets cuDNN convolutions use TF32 by default; an "fp32" cell should not, unless asked.
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def place_model(model, cell, channels_last_option, tf32: bool):
    """Move an fp32 CPU model to the cell's device, precision and memory format."""
    import torch

    channels_last = resolve_channels_last(channels_last_option, cell.device)
    if cell.device == "cuda":
        set_tf32(tf32)
        # cuDNN picks the fastest algorithm per shape during warm-up, outside the timed window.
        torch.backends.cudnn.benchmark = True
    model = model.to(device=cell.device, dtype=torch_dtype(cell.precision))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, channels_last


def module_runner(model, cell, channels_last: bool, dtype, cuda_graphs: bool = False, facts=None) -> Runner:
    import torch

    facts = dict(facts or {}, channels_last=channels_last)

    def prepare(x):
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def run(x):
        with torch.inference_mode():
            return model(x)

    if not cuda_graphs:
        return Runner(run=run, prepare=prepare, input_dtype=dtype, facts=facts)

    # CUDA graph replay: capture once on a static input; each call copies the batch into it
    # (a device-to-device copy of microseconds) and replays the whole forward with one launch.
    static = {}

    def run_graph(x):
        if "graph" not in static:
            static["input"] = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(3):  # warm up on a side stream, as capture requires
                    model(static["input"])
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static["output"] = model(static["input"])
            static["graph"] = graph
        static["input"].copy_(x)
        static["graph"].replay()
        return static["output"]

    return Runner(run=run_graph, prepare=prepare, input_dtype=dtype, facts=dict(facts, cuda_graphs=True))
