"""Inputs given by URL (``url=`` instead of a file), off unless hosts are allowed.

The fetch obeys the upload's size limit (checked on Content-Length and while
streaming to disk), a total time limit, http(s) only and the host allow-list of
:mod:`server.outbound`, which every redirect hop is checked against again. What
arrives is an :class:`Upload` like a multipart file, so the same type checks follow.
"""
from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

import aiohttp
from aiohttp import web
from yarl import URL

from server.errors import ApiError
from server.jobs.uploads import Upload, receive_file, too_large
from server.jobs.url_input_config import UrlInputConfig
from server.outbound import OutboundPolicy, client_session
from server.streams.urls import HostNotAllowed, UrlError, redact

_CHUNK = 256 * 1024


class UrlFetcher:
    def __init__(self, config: UrlInputConfig):
        self.config = config
        self.policy = OutboundPolicy.parse(config.allowed_hosts, "input URL hosts")
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.policy.enabled:
            self._http = client_session(self.policy, self.config.timeout_s)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _check(self, url: str) -> URL:
        try:
            return self.policy.check_url(url).url
        except HostNotAllowed as exc:
            raise ApiError(403, f"url: {exc}", code="host_not_allowed") from None
        except UrlError as exc:
            raise ApiError(400, f"url: {exc}", code="invalid_parameter") from None

    async def fetch(self, url: str, target: Path, max_bytes: int) -> Upload:
        """Download ``url`` into ``target``; the partial file is removed on any error."""
        if self._http is None:
            raise ApiError(403, "url= is off on this server: send the file itself, or set "
                                "ABRAR_URL_INPUT_ALLOWED_HOSTS to allow fetching from some hosts",
                           code="feature_disabled")
        current = self._check(url)
        try:
            for _ in range(self.config.max_redirects + 1):
                async with self._http.get(current, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        current = self._check(str(current.join(URL(resp.headers["Location"]))))
                        continue
                    if resp.status != 200:
                        raise ApiError(422, f"fetching {redact(str(current))} answered {resp.status}",
                                       code="url_fetch_failed")
                    if resp.content_length is not None and resp.content_length > max_bytes:
                        raise too_large(max_bytes)
                    size = await _save(resp, target, max_bytes)
                    if size == 0:
                        raise ApiError(400, "the URL gave an empty file")
                    return Upload(path=target, filename=PurePosixPath(current.path).name or "download", size=size)
            raise ApiError(422, f"more than {self.config.max_redirects} redirects", code="url_fetch_failed")
        except (aiohttp.ClientError, OSError) as exc:
            target.unlink(missing_ok=True)
            raise ApiError(422, f"cannot fetch {redact(str(current))}: {exc}", code="url_fetch_failed") from None
        except asyncio.TimeoutError:
            target.unlink(missing_ok=True)
            raise ApiError(422, f"fetching the URL took longer than {self.config.timeout_s:g} s",
                           code="url_fetch_failed") from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise


async def _save(resp: aiohttp.ClientResponse, target: Path, max_bytes: int) -> int:
    size = 0
    with target.open("wb") as out:
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            out.write(chunk)
    return size


async def receive_input(request: web.Request, fetcher: UrlFetcher, url: str | None, target: Path,
                        max_bytes: int) -> Upload:
    """The multipart file, or with ``url`` the file it names (then the body must be empty)."""
    if url is None:
        return await receive_file(request, target, max_bytes)
    if request.content_length or request.body_exists and request.content_length is None:
        raise ApiError(400, "give either a file in the body or url=, not both")
    return await fetcher.fetch(url, target, max_bytes)
