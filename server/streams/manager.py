"""Every RTSP stream of one server: create, look up, change, delete, persist, restore."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import Executor, Future
from pathlib import Path

from matting.compositing import Background
from matting.runtime import MattingRuntime
from server.capacity import Capacity, Share
from server.errors import ApiError
from server.live.backgrounds import parse_client_background
from server.live.pipeline import LivePipeline
from server.streams import store
from server.streams.config import StreamsConfig
from server.streams.stream import Stream, StreamSpec
from server.streams.urls import (
    HostNotAllowed,
    UrlError,
    parse_allow_list,
    parse_source_url,
)

log = logging.getLogger(__name__)


class StreamManager:
    def __init__(self, config: StreamsConfig, runtime: MattingRuntime, executor: Executor, *,
                 recordings_dir: Path, data_dir: Path, capacity: Capacity, downsample_ratio: float | None = None,
                 matte_budget_ms: float | None = None, heavy_executor: Executor | None = None):
        self.config = config
        self.capacity = capacity
        self._heavy_executor = heavy_executor
        try:
            self.allowed_hosts = parse_allow_list(config.allowed_hosts)
        except ValueError as exc:
            raise ValueError(f"invalid ABRAR_STREAMS_ALLOWED_HOSTS: {exc}") from None
        try:
            parse_client_background(config.default_background)
        except ValueError as exc:
            raise ValueError(f"invalid ABRAR_STREAMS_BACKGROUND: {exc}") from None
        self._runtime = runtime
        self._executor = executor
        self._recordings_dir = recordings_dir
        self._downsample_ratio = downsample_ratio
        self._matte_budget_ms = matte_budget_ms
        self.records: store.StreamRecords | None = store.FileRecords(data_dir / store.FILE_NAME) \
            if config.persist else None
        self._streams: dict[str, Stream] = {}
        self.deleted_total = 0

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def all(self) -> list[Stream]:
        return list(self._streams.values())

    def get(self, stream_id: str) -> Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise ApiError(404, f"no stream {stream_id!r}")
        return stream

    def check_url(self, url: object):
        try:
            return parse_source_url(url, self.allowed_hosts)
        except HostNotAllowed as exc:
            raise ApiError(403, str(exc), code="host_not_allowed") from None
        except UrlError as exc:
            raise ApiError(400, str(exc), code="bad_url") from None

    def problems(self) -> list[str]:
        """For /readyz: streams whose reader thread or processing task died."""
        return [problem for stream in self.all() for problem in stream.problems()]

    async def create(self, url: object, background_label: str, background: Background, record: bool,
                     *, stream_id: str | None = None, created_at: float | None = None) -> Stream:
        """A new stream. One that mattes from the start (recording, or ``matte=always``)
        is admitted by live capacity (503 when full); one matted on demand takes its share
        when a viewer comes (:meth:`Stream.claim_matting`). A stream restored at start-up
        (``stream_id`` given) is taken on even over capacity, not lost."""
        source = self.check_url(url)
        if len(self._streams) >= self.config.max_streams:
            raise ApiError(503, f"the server is at its limit of {self.config.max_streams} streams; "
                                "delete one first", code="too_many_streams")
        spec = StreamSpec(id=stream_id or uuid.uuid4().hex[:12], source=source, background=background_label,
                          record=record, created_at=created_at or time.time())
        share = Share(self.capacity, _capacity_key(spec.id))
        if record or self.config.matte == "always":
            share.take(force=stream_id is not None)
        pipeline = LivePipeline(self._runtime, self._executor, background, recordings_dir=self._recordings_dir,
                                name=f"stream-{spec.id}", downsample_ratio=self._downsample_ratio,
                                matte_budget_ms=self._matte_budget_ms, heavy_executor=self._heavy_executor,
                                capacity=self.capacity)
        stream = Stream(spec, pipeline, self.config, share)
        self._streams[spec.id] = stream
        stream.start()
        await self._persist()
        log.info("stream %s: ingesting %s", spec.id, source.redacted)
        return stream

    def set_background(self, stream: Stream, background: Background, label: str) -> None:
        stream.pipeline.set_background(background)
        stream.background = label
        self._save()

    async def set_record(self, stream: Stream, record: bool) -> None:
        if record:
            stream.claim_matting()  # 503 when an idle stream cannot be matted now
        await stream.set_record(record)
        await self._persist()

    async def delete(self, stream_id: str) -> Stream:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            raise ApiError(404, f"no stream {stream_id!r}")
        self.capacity.release(_capacity_key(stream_id))
        await self._persist()
        self.deleted_total += 1
        await stream.close()
        log.info("stream %s: deleted", stream_id)
        return stream

    async def restore(self) -> None:
        """Re-create the streams saved by an earlier run (the cameras may still be down)."""
        if self.records is None:
            return
        records = self.records
        entries = await asyncio.get_running_loop().run_in_executor(None, records.load, self.config.max_streams)
        for entry in entries:
            await self.adopt(entry)
        await self._persist()  # drops entries that could not be restored

    async def adopt(self, entry: store.Entry) -> None:
        """Run a saved stream here: at start-up, or taken over from a node that died."""
        if entry.id in self._streams:
            return
        label = entry.background
        try:
            background = parse_client_background(label)
        except ValueError:  # an uploaded image is not persisted
            label = self.config.default_background
            background = parse_client_background(label)
        try:
            await self.create(entry.url, label, background, entry.record,
                              stream_id=entry.id, created_at=entry.created_at)
        except ApiError as exc:  # e.g. the host is no longer on the allow-list
            log.warning("stream %s not restored: %s", entry.id, exc.message)

    async def release(self, stream_id: str) -> None:
        """Stop a stream here but keep its record: another node runs it now."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self.capacity.release(_capacity_key(stream_id))
            log.warning("stream %s: another node took it over; stopped here", stream_id)
            await stream.close()

    async def close_all(self) -> None:
        """Server shutdown: stop every stream but keep the saved list for the next start."""
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            self.capacity.release(_capacity_key(stream.id))
        join = self.config.read_timeout_s + 1.0
        await asyncio.gather(*(stream.close(join_timeout=join) for stream in streams))
        if self.records is not None:
            self.records.release_all()

    async def _persist(self) -> None:
        """Save, and wait until the change is visible to other nodes (saved on another thread)."""
        saved = self._save()
        if saved is not None:
            try:
                await asyncio.wrap_future(saved)
            except Exception:  # noqa: BLE001 - logged where it failed; the stream runs on here
                pass

    def _save(self) -> Future[None] | None:
        if self.records is None:
            return None
        return self.records.save([
            store.Entry(id=s.id, url=s.spec.source.url, background=s.background, record=s.record,
                        created_at=s.spec.created_at)
            for s in self._streams.values()])


def _capacity_key(stream_id: str) -> str:
    return f"stream:{stream_id}"
