"""Video jobs across nodes: wake-ups and cancels by NOTIFY, takeover of dead nodes' jobs."""
from __future__ import annotations

import logging

from server.cluster.jobs_store import CHANNEL, PgJobStore
from server.cluster.node import ClusterNode
from server.jobs.state import JobsState
from server.jobs.store import Job
from server.jobs.worker import expires_at

log = logging.getLogger(__name__)


def follow_jobs(node: ClusterNode, state: JobsState) -> None:
    """Hook the job runner of this node to the shared queue."""
    store = state.store
    assert isinstance(store, PgJobStore)
    runner = state.runner
    cfg = state.config

    def on_notify(payload: str) -> None:
        if payload == "queued":
            runner.wake()
        elif payload.startswith("cancel "):
            job_id = payload.split(" ", 1)[1]
            if job_id in runner.running_ids():
                runner.cancel(job_id)

    def cleanup(job: Job, status: str) -> None:
        state.files.remove_outputs(job.id, keep=job.input_name)  # the dead node's half-written output
        if status == "failed":
            state.files.remove_file(job.id, job.input_name)

    def take_over_and_check() -> tuple[list, list[str], list[str]]:
        taken = store.take_over_dead(node.config.job_failover_s, cfg.on_restart, cfg.max_interruptions,
                                     expires_at(cfg), cleanup)
        lost, cancel = store.not_ours(runner.running_ids())
        return taken, lost, cancel

    async def tick() -> None:
        taken, lost, cancel = await node.call(take_over_and_check)
        for t in taken:
            log.warning("job %s: node %s stopped heart-beating; %s", t.job_id, t.node_id,
                        "queued to run again" if t.status == "queued" else "failed (interrupted too often)")
        if any(t.status == "queued" for t in taken):
            runner.wake()
        for job_id in lost:
            runner.lost(job_id)
        for job_id in cancel:  # a NOTIFY that this node missed (e.g. while reconnecting)
            runner.cancel(job_id)

    node.on_notify(CHANNEL, on_notify)
    node.on_beat(tick)
