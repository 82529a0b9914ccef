"""A model of a user's own, for the `python:` model source's tests: one-channel input, and an
operation (a 2-D FFT) that TorchScript traces but the ONNX exporter cannot take, so that its ONNX
cells must be `skipped` with the exporter's own reason while the other formats run."""

import torch


class Spectral(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x):
        magnitude = torch.fft.rfft2(self.conv(x)).abs()
        return self.head(magnitude.mean((2, 3)))


def build():
    return {"model": Spectral(), "in_chans": 1, "resolution": 32}
