"""RVM graph files against each other: the network alone in ONNX Runtime, interleaved. Prints JSON.

For comparing two exports or quantisations of RVM (say, the ONNX cache's file before and
after a change to the export, copied aside) on the same frame: every graph gets its own
session, all loaded before timing, then they take turns, ``--per-turn`` runs each per
turn for ``--turns`` turns, so that the machine's drift (20-30 % within minutes on small
VMs) hits each alike. A graph's layouts of the state and of ``small`` (NCHW, or the channels-last of
the current exports) are read from its inputs. Times are medians over all turns, with
each graph's ratio to the first.

    python bench/bench_onnx_graphs.py before.onnx after.onnx --turns 50
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from matting.onnx_runtime import ort_session  # noqa: E402
from matting.rvm.network import downsample  # noqa: E402
from matting.rvm.onnx_backend import STATE_NAMES, graph_state_shapes, state_shapes  # noqa: E402


def parse_args() -> argparse.Namespace:
    summary, details = (__doc__ or "").split("\n\n", 1)
    p = argparse.ArgumentParser(description=summary, epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graphs", nargs="+", type=Path, help="refined-graph ONNX files (the first is the reference)")
    p.add_argument("--size", default="640x480", help="frame WIDTHxHEIGHT")
    p.add_argument("--ratio", type=float, default=0.5, help="downsample ratio")
    p.add_argument("--turns", type=int, default=40)
    p.add_argument("--per-turn", type=int, default=2, help="runs of each graph per turn")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: cores)")
    return p.parse_args()


def feeds_for(session, src: torch.Tensor, ratio: float) -> dict[str, np.ndarray]:
    small = downsample(src, ratio)
    # a channels-last input has its channel count, a number, as its last dimension
    channels_last = {i.name for i in session.get_inputs() if isinstance(i.shape[3], int)}
    feeds = {"src": src.numpy(), "small": small.permute(0, 2, 3, 1).contiguous().numpy()
             if "small" in channels_last else small.numpy()}
    shapes = (graph_state_shapes if "r1" in channels_last else state_shapes)(1, *small.shape[2:])
    feeds.update({name: np.zeros(shape, np.float32) for name, shape in zip(STATE_NAMES, shapes, strict=True)})
    return feeds


def main() -> None:
    args = parse_args()
    width, height = map(int, args.size.split("x"))
    src = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    sessions = [ort_session(path.read_bytes(), args.threads) for path in args.graphs]
    feeds = [feeds_for(s, src, args.ratio) for s in sessions]
    for session, feed in zip(sessions, feeds, strict=True):
        for _ in range(5):
            session.run(None, feed)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(args.turns):
        for session, feed, ms in zip(sessions, feeds, times, strict=True):
            for _ in range(args.per_turn):
                started = time.perf_counter()
                session.run(None, feed)
                ms.append((time.perf_counter() - started) * 1e3)
    reference = float(np.median(times[0]))
    print(json.dumps({
        "bench": f"RVM graphs, network alone, {args.size} at ratio {args.ratio}, interleaved",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_avg_1min": os.getloadavg()[0]},
        "turns": args.turns, "per_turn": args.per_turn,
        "results": [{"graph": str(path), "ms_p50": round(float(np.median(ms)), 2),
                     "ms_p95": round(float(np.percentile(ms, 95)), 2),
                     "vs_first": round(float(np.median(ms)) / reference, 3)}
                    for path, ms in zip(args.graphs, times, strict=True)],
    }, indent=2))


if __name__ == "__main__":
    main()
