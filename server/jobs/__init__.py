"""server.jobs: the upload API (POST /remove-bg, video jobs); see setup().

Restart semantics: job records and files live under the data dir (SQLite, WAL).
At start-up, jobs the previous process left running are re-queued and run again
from their first frame (``ABRAR_JOBS_ON_RESTART=requeue``, the default; a
matting run cannot resume mid-stream), or failed with an error saying so
(``fail``). A job interrupted ``ABRAR_JOB_MAX_INTERRUPTIONS`` times is failed so
it cannot crash-loop the server. Queued jobs stay queued; completed results stay
downloadable until they expire. A clean shutdown puts running jobs back in the
queue without counting an interruption.
"""
from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this feature's routes, OpenAPI paths, metrics and lifecycle hooks."""
    # Imported here: server.config imports server.jobs.config, which runs this
    # package's __init__ before server.config has finished loading.
    from server.jobs.lifecycle import install

    install(app)


def problems(app: web.Application) -> list[str]:
    """What keeps video jobs from running (a full disk ...), for /healthz; empty when fine."""
    from server.jobs.state import JOBS

    state = app.get(JOBS)
    return state.runner.problems() if state is not None else []
