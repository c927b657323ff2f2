"""How the 2D network runs at inference: torch (CUDA or CPU) or OpenVINO (CPU), in float32 or bfloat16.

Precision ``auto`` is what nnU-Net does: autocast to bfloat16 (float16 where unsupported) on CUDA, float32
elsewhere. ``bf16`` also autocasts on the CPU, where recent x86 cores (AVX-512 BF16, AMX) run bfloat16 convolutions
several times faster than float32; ``fp32`` never autocasts. Probabilities are always averaged in float32 by the
predictor, whatever the precision of the network's arithmetic.

The ``openvino`` backend (optional: ``pip install nnunet_ext[openvino]``) converts the network with the current
parameters into an OpenVINO model with dynamic batch and plane size and runs it on the CPU; OpenVINO's CPU
kernels were clearly faster than torch's on the same CPU in our measurements (README, inference speed).
A converted model holds one parameter set, so the predictor converts once per fold and keeps the result.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads the choices below without loading it
    import torch

Precision = Literal["auto", "fp32", "bf16"]
Backend = Literal["torch", "openvino"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
BACKENDS: tuple[str, ...] = ("torch", "openvino")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (not installed, or not for this device)."""


def check_precision(precision: str) -> None:
    """Fail before any work on an unknown ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")


def check_backend(backend: str, device: torch.device) -> None:
    """Fail before any work when ``backend`` cannot run on ``device``."""
    if backend not in BACKENDS:
        raise BackendUnavailable(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "openvino":
        if device.type != "cpu":
            raise BackendUnavailable(f"backend 'openvino' runs on the CPU only; use -device cpu (got {device.type})")
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise BackendUnavailable("backend 'openvino' needs the openvino package: "
                                     "pip install 'nnunet_ext[openvino]'") from None


def autocast(device: torch.device, precision: str):
    """The autocast context for the network's forward pass on ``device`` at ``precision``."""
    import torch
    from nnunetv2.utilities.helpers import dummy_context

    check_precision(precision)
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return dummy_context()
    if device.type == "cuda":
        dtype = torch.bfloat16 if precision == "bf16" or torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def openvino_network(network: torch.nn.Module, example: torch.Tensor, precision: str,
                     threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``network`` (with its current parameters) as an OpenVINO CPU model: (N, C', H, W) -> (N, classes, H, W).

    ``example`` fixes the channel count; batch, height and width stay dynamic. ``auto`` and ``fp32`` run in float32
    (OpenVINO's own default on bfloat16-capable CPUs would be bfloat16), ``bf16`` in bfloat16.
    """
    import openvino
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing notes the network's shape checks, which the predictor's padding meets
        model = openvino.convert_model(network.eval(), example_input=example)
    model.reshape({model.inputs[0]: openvino.PartialShape([-1, example.shape[1], -1, -1])})
    compiled = openvino.Core().compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": max(1, threads)})

    def run(inputs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(compiled(inputs.float().contiguous().numpy())[0])

    return run
