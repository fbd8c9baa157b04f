"""Server configuration: env vars and `abrar serve` flags, printed at start-up."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from matting.config import RuntimeConfig
from server.cluster.config import ClusterConfig
from server.jobs.config import JobsConfig
from server.jobs.url_input_config import UrlInputConfig
from server.jobs.webhook_config import WebhooksConfig
from server.live.config import LiveConfig
from server.settings import setting
from server.streams.config import StreamsConfig
from server.webrtc_http.config import WebRtcHttpConfig


@dataclass(frozen=True)
class ModelConfig:
    device: str = setting("auto", "ABRAR_DEVICE", "torch device: auto, cpu, cuda or cuda:N")
    precision: str = setting("auto", "ABRAR_PRECISION",
                             "auto (fp16 on CUDA; on a CPU int8 RVM, and bf16 RMBG where the CPU has AMX or "
                             "AVX512-BF16), fp32, fp16 (CUDA) or int8 (CPU, ONNX Runtime: quantised RVM, calibrated "
                             "once per checkpoint at first load and cached in ABRAR_CACHE_DIR/onnx; RMBG as with auto)",
                             choices=("auto", "fp32", "fp16", "int8"))
    rvm_weights: Path | None = setting(None, "ABRAR_RVM_WEIGHTS", "path to rvm_mobilenetv3.pth")
    rmbg_weights: Path | None = setting(None, "ABRAR_RMBG_WEIGHTS", "path to RMBG-1.4 model.safetensors")
    refiner: str = setting("auto", "ABRAR_REFINER", "RVM refiner",
                           choices=("auto", "deep_guided_filter", "fast_guided_filter"))
    threads: int | None = setting(None, "ABRAR_THREADS",
                                  "CPU threads for torch and ONNX Runtime (default: all cores; "
                                  "a live frame that runs beside another takes half)")
    backend: str = setting("auto", "ABRAR_BACKEND",
                           "RVM and RMBG backend: auto (ONNX Runtime on a CPU when onnx and onnxruntime are installed, "
                           "else torch), torch or onnxruntime (CPU fp32 only)",
                           choices=("auto", "torch", "onnxruntime"))
    heavy_threads: int = setting(0, "ABRAR_HEAVY_THREADS",
                                 "threads of the RMBG process (snapshots, uploads) and of each video-job process, "
                                 "so live frames keep a core (0 = auto: cores - 1, at least 1)")
    heavy_workers: int = setting(2, "ABRAR_HEAVY_WORKERS",
                                 "heavy-lane threads for snapshots (PNG encoding) and background-image decoding")
    preload: bool = setting(True, "ABRAR_PRELOAD_MODELS",
                            "load RVM and RMBG (and their ONNX exports) at start-up in the background; "
                            "false: load each on first use (/readyz then does not wait for them)")
    download: bool = setting(True, "ABRAR_DOWNLOAD", "download missing weights at start-up")
    inference_workers: int = setting(0, "ABRAR_INFERENCE_WORKERS",
                                     "threads running live/RTSP inference (0 = auto: one per batch slot, "
                                     "so 16 on a GPU, and 2 on a CPU: two streams' frames side by side)")
    batch_max: int = setting(0, "ABRAR_BATCH_MAX",
                             "batch frames of up to this many live/RTSP streams of one size into one RVM pass "
                             "(0 = auto: 16 on a GPU, off on a CPU; 1 = off)")
    batch_window_ms: float = setting(5.0, "ABRAR_BATCH_WINDOW_MS",
                                     "longest a frame waits for others to join its batch")
    cuda_graphs: bool = setting(True, "ABRAR_CUDA_GRAPHS",
                                "replay RVM from CUDA graphs on a GPU (one capture per frame size and ratio)")

    def __post_init__(self):
        if self.batch_max < 0:
            raise ValueError(f"ABRAR_BATCH_MAX must be 0 (auto) or more, not {self.batch_max}")
        if self.heavy_threads < 0:
            raise ValueError(f"ABRAR_HEAVY_THREADS must be 0 (auto) or more, not {self.heavy_threads}")
        if self.heavy_workers < 1:
            raise ValueError(f"ABRAR_HEAVY_WORKERS must be at least 1, not {self.heavy_workers}")
        if self.inference_workers < 0:
            raise ValueError(f"ABRAR_INFERENCE_WORKERS must be 0 (auto) or more, not {self.inference_workers}")
        if self.batch_window_ms < 0:
            raise ValueError(f"ABRAR_BATCH_WINDOW_MS must not be negative, not {self.batch_window_ms}")

    def runtime_config(self) -> RuntimeConfig:
        return RuntimeConfig(device=self.device, precision=self.precision, rvm_weights=self.rvm_weights,
                             rmbg_weights=self.rmbg_weights, refiner=self.refiner, threads=self.threads,
                             heavy_threads=self.heavy_threads or None, download=self.download, backend=self.backend,
                             batch_max=self.batch_max, batch_window_ms=self.batch_window_ms,
                             cuda_graphs=self.cuda_graphs)


@dataclass(frozen=True)
class ServerConfig:
    host: str = setting("127.0.0.1", "ABRAR_HOST", "address to listen on (0.0.0.0 for all interfaces)")
    port: int = setting(8080, "ABRAR_PORT", "TCP port")
    data_dir: Path = setting(Path("data"), "ABRAR_DATA_DIR", "where uploads, job results and the job database live")
    recordings_dir: Path = setting(Path("recordings"), "ABRAR_RECORDINGS_DIR", "where live recordings are written")
    api_key: str | None = setting(None, "ABRAR_API_KEY", "require this key in the X-API-Key header", secret=True)
    cors_origins: str = setting("", "ABRAR_CORS_ORIGINS", "comma-separated origins allowed by CORS ('*' for any)")
    ice_addresses: str = setting("", "ABRAR_ICE_ADDRESSES",
                                 "comma-separated IPs offered as WebRTC host candidates "
                                 "(default: every non-loopback interface; 127.0.0.1 for loopback only)")
    read_timeout_s: float = setting(30.0, "ABRAR_READ_TIMEOUT_S",
                                    "seconds a client may take to send its request headers, or stay silent "
                                    "while sending a body; then the connection is closed (408 for a body)")
    log_level: str = setting("info", "ABRAR_LOG_LEVEL", "logging level",
                             choices=("debug", "info", "warning", "error"))
    models_dir: Path | None = setting(None, "ABRAR_MODELS_DIR",
                                      "folder with the model checkpoints, searched first (then ./models, "
                                      "then the cache, ABRAR_CACHE_DIR or ~/.cache/abrar/models)")
    model: ModelConfig = field(default_factory=ModelConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    webrtc: WebRtcHttpConfig = field(default_factory=WebRtcHttpConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    url_input: UrlInputConfig = field(default_factory=UrlInputConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def runtime_config(self) -> RuntimeConfig:
        return replace(self.model.runtime_config(), models_dir=self.models_dir)
