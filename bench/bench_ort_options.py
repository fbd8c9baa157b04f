"""ONNX Runtime session options for RVM on the CPU, fp32 and int8: graph optimisation
level, spinning threads, and thread counts when several live streams share the cores.

Single stream: RVM's refined graph (the live path's) on real frames at 640x480, ratio
0.5, state carried; every option in one process, a few frames each in turn over
``--rounds`` rounds (interleaved); ms per frame p50 / p95.

Several streams: ``--streams`` threads each run their own stream as fast as they can for
``--seconds``: all through one shared session with one thread per core, each through its
own session with ``cores / streams`` threads, or through the server's
``OnnxMattingNetwork.run_graph`` (all the cores for a run alone, half of them for a run that
starts beside another). Total frames per second.

    python bench/bench_ort_options.py --rounds 4 --frames 6
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))
VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
SIZE, RATIO = (640, 480), 0.5
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))

# name -> ort_session keyword arguments
OPTIONS = {
    "default (all, no spinning)": {},
    "optimization extended": {"optimization": "extended"},
    "optimization basic": {"optimization": "basic"},
    "spinning threads": {"spinning": True},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--frames", type=int, default=6, help="timed frames per option per round")
    p.add_argument("--streams", type=int, default=2, help="concurrent streams (0: skip)")
    p.add_argument("--seconds", type=float, default=6.0, help="per concurrency case")
    return p.parse_args()


def feeds_for_clip(count: int) -> list[dict]:
    """Network inputs of ``count`` real frames (state filled in as the stream runs)."""
    import av
    import cv2
    import numpy as np
    import torch

    from matting.rvm.network import downsample

    feeds = []
    with av.open(str(VIDEO)) as container:
        for _, frame in zip(range(count), container.decode(video=0), strict=False):
            rgb = cv2.resize(frame.to_ndarray(format="rgb24"), SIZE)
            src = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255)
            small = downsample(src, RATIO).permute(0, 2, 3, 1)  # the graphs take it channels-last
            feeds.append({"src": src.numpy(), "small": np.ascontiguousarray(small.numpy())})
    return feeds


class Stream:
    """One stream through one session: ``step()`` runs its next frame, state carried."""

    def __init__(self, session, feeds: list[dict]):
        import numpy as np

        from matting.rvm.onnx_backend import STATE_NAMES, graph_state_shapes

        self.session, self.feeds, self.i = session, feeds, 0
        shapes = graph_state_shapes(1, *feeds[0]["small"].shape[1:3])
        self.state = dict(zip(STATE_NAMES, (np.zeros(s, np.float32) for s in shapes), strict=False))
        self.names = STATE_NAMES

    def step(self) -> None:
        outputs = self.session.run(None, {**self.feeds[self.i % len(self.feeds)], **self.state})
        self.state = dict(zip(self.names, outputs[2:], strict=False))
        self.i += 1


def concurrent_fps(make_session, streams: int, feeds: list[dict], seconds: float) -> float:
    runners = [Stream(make_session(), feeds) for _ in range(streams)]
    for r in runners:
        r.step()
    stop = time.perf_counter() + seconds
    counts = [0] * streams

    def run(k: int) -> None:
        while time.perf_counter() < stop:
            runners[k].step()
            counts[k] += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round(sum(counts) / seconds, 2)


def main() -> None:
    import numpy as np
    import torch

    from matting import weights
    from matting.onnx_cache import OnnxCache
    from matting.onnx_runtime import ort_session
    from matting.rvm import load_rvm
    from matting.rvm.onnx_backend import OnnxMattingNetwork, graph_for

    args = parse_args()
    cores = os.cpu_count() or 1
    path = weights.resolve("rvm", download=False)
    net = OnnxMattingNetwork(load_rvm(path, device="cpu", dtype=torch.float32), cache=OnnxCache(path))
    feeds = feeds_for_clip(16)
    load = [os.getloadavg()[0]]
    report: dict = {"cpu_count": cores, "size": f"{SIZE[0]}x{SIZE[1]}", "ratio": RATIO, "single_stream": [],
                    "streams": []}
    for precision in args.precisions.split(","):
        model = net.model(graph_for(RATIO, int(SIZE[1] * RATIO), int(SIZE[0] * RATIO)), precision)
        streams = {name: Stream(ort_session(model, cores, **kw), feeds) for name, kw in OPTIONS.items()}
        times: dict[str, list[float]] = {name: [] for name in OPTIONS}
        for s in streams.values():
            s.step()
        for _ in range(args.rounds):
            for name, s in streams.items():
                for _ in range(args.frames):
                    start = time.perf_counter()
                    s.step()
                    times[name].append((time.perf_counter() - start) * 1e3)
            load.append(os.getloadavg()[0])
        for name, ms in times.items():
            report["single_stream"].append({"precision": precision, "option": name,
                                            "ms_p50": round(float(np.percentile(ms, 50)), 1),
                                            "ms_p95": round(float(np.percentile(ms, 95)), 1)})
            print(json.dumps(report["single_stream"][-1]), file=sys.stderr)
        if args.streams:
            per_stream = max(1, cores // args.streams)
            graph = graph_for(RATIO, int(SIZE[1] * RATIO), int(SIZE[0] * RATIO))
            cases = {f"one shared session, {cores} threads": lambda m=model: shared(m, cores),
                     f"a session per stream, {per_stream} thread(s) each":
                         lambda m=model, n=per_stream: ort_session(m, n),
                     "the server's (run_graph: all threads alone, half beside another)":
                         lambda p=precision, g=graph: GraphRunner(server_network(net, p, cores), g)}
            for name, make in cases.items():
                fps = concurrent_fps(make, args.streams, feeds, args.seconds)
                report["streams"].append({"precision": precision, "streams": args.streams, "case": name,
                                          "total_fps": fps})
                print(json.dumps(report["streams"][-1]), file=sys.stderr)
                load.append(os.getloadavg()[0])
    report["load_1m"] = {"min": round(min(load), 2), "max": round(max(load), 2)}
    print(json.dumps(report, indent=2))


_SHARED: dict = {}


class GraphRunner:
    """``run(None, feeds)`` through an OnnxMattingNetwork, as the server runs frames."""

    def __init__(self, network, graph: str):
        self.network, self.graph = network, graph

    def run(self, _outputs, feeds: dict) -> list:
        return self.network.run_graph(self.graph, feeds)


def server_network(net, precision: str, threads: int):
    """One network per precision, shared by every stream (the server's way)."""
    from matting.rvm.onnx_backend import OnnxMattingNetwork

    key = ("network", precision, threads)
    if key not in _SHARED:
        _SHARED[key] = OnnxMattingNetwork(net.net, threads=threads, precision=precision, cache=net.cache)
    return _SHARED[key]


def shared(model: bytes, threads: int):
    """One session for every stream of this model (the server's way)."""
    key = (hash(model), threads)
    if key not in _SHARED:
        from matting.onnx_runtime import ort_session

        _SHARED[key] = ort_session(model, threads)
    return _SHARED[key]


if __name__ == "__main__":
    main()
