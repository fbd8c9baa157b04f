"""ONNX export and ONNX Runtime CPU sessions, shared by the RVM and RMBG backends.

On a CPU, ONNX Runtime runs these convolutional networks 1.2-1.8x faster than eager
PyTorch for the same float32 results, and stays steady when other processes compete for
the cores (bench/README.md).
"""
from __future__ import annotations

import io
import os
import threading
import warnings

import torch
from torch import nn

OPSET = 17
INSTALL = "pip install onnx onnxruntime"
# torch's exporter keeps tracing state that two threads must not share (models of a
# process may load from several threads at once).
_EXPORT_LOCK = threading.Lock()


class OnnxUnavailable(RuntimeError):
    """ONNX export or ONNX Runtime is not installed; the message says what to install."""


def to_onnx(module: nn.Module, inputs: dict[str, torch.Tensor], outputs: list[str],
            dynamic_axes: dict | None = None, opset: int = OPSET) -> bytes:
    """The ONNX bytes of ``module`` traced on ``inputs`` (name -> example tensor)."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as exc:
        raise OnnxUnavailable(f"the onnxruntime backend needs the 'onnx' package: {INSTALL}") from exc
    buffer = io.BytesIO()
    with _EXPORT_LOCK, warnings.catch_warnings():
        # The legacy (TorchScript) exporter is deprecated but needs no onnxscript and traces
        # these graphs exactly; its tracer warnings are about shape checks.
        warnings.simplefilter("ignore")
        # eval(): the exporter restores the module's train/eval mode afterwards, recursively,
        # and a network left in training mode would update its BatchNorm statistics.
        # torch types ``f`` as a path only; the legacy exporter writes to a file object too.
        torch.onnx.export(module.eval(), tuple(inputs.values()), buffer,  # type: ignore[arg-type]
                          dynamo=False, opset_version=opset,
                          input_names=list(inputs), output_names=outputs, dynamic_axes=dynamic_axes)
    return buffer.getvalue()


def ort_session(model: bytes, threads: int | None = None, *, optimization: str = "all", spinning: bool = False):
    """An ONNX Runtime CPU session for ``model`` (bytes) with ``threads`` intra-op threads
    (None: one per core). Idle threads sleep rather than spin (``spinning``), so that they
    do not take the cores that decoding, compositing and encoding need. ``optimization``:
    ONNX Runtime's graph optimisation level (basic, extended, all); bench_ort_options.py
    measures the alternatives."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise OnnxUnavailable(f"the onnxruntime backend needs 'onnxruntime': {INSTALL}") from exc
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = levels[optimization]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
