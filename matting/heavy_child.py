"""What every heavy-work child process does first: step back, and die with its parent.

A child running RMBG or a video file runs in Linux's SCHED_IDLE class (and at nice +10
where that is refused), so it gets only the CPU time live frames leave: at nice +10
alone, a snapshot, an upload and a video job during a live session took its frame rate
down by 27-32 % on the 2-core machine (the lanes test's bound is 30 %, which it missed in
one run of three); in SCHED_IDLE it kept 98-103 % of it, while the heavy work took 21-25 s
instead of 17-18 s. It must not outlive a server that was killed (SIGKILL, out
of memory): an orphaned video job would go on and write a result for a job the restarted
server is already running again. A watcher thread ends the child within a second of its
parent's death (Linux's PR_SET_PDEATHSIG would follow the parent *thread* that spawned
it, and pool threads come and go).
"""
from __future__ import annotations

import os
import threading

# Niceness of heavy-work children where SCHED_IDLE is refused: at +10 a competing live
# thread gets about ten times their CPU share.
NICENESS = 10
_WATCH_S = 0.5


def lower_priority(pid: int = 0) -> None:
    """Put process ``pid`` (0: this one) at NICENESS, unless it is lower already, and its
    threads in SCHED_IDLE, which the threads it starts afterwards (torch's, ONNX
    Runtime's) inherit. The parent calls it right after starting a child, so that the
    child's imports run at the lower priority too; the child calls it again in case it
    won the race."""
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) < NICENESS:
            os.setpriority(os.PRIO_PROCESS, pid, NICENESS)
    except OSError:  # a sandbox may refuse, or the child is gone; its own GIL is the larger part
        pass
    try:  # every thread it has now; threads it starts later inherit the class
        for tid in os.listdir(f"/proc/{pid or os.getpid()}/task"):
            os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):  # refused, gone, or not Linux: nice +10 alone then
        pass


def start_heavy_child(parent_pid: int) -> None:
    """Call first thing in the child, with the parent's pid (read before the spawn)."""
    lower_priority()
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    stopped = threading.Event()
    while os.getppid() == parent_pid:
        stopped.wait(_WATCH_S)
    os._exit(1)
