"""The Ray engine: a pool of actors, one slide per call, each actor on its own CPUs (and GPU).

An actor is restarted when its process dies, and the slide it had is tried again (up to ``retries``
more times, as a slide that raised). Each actor has one slide in flight, so at most ``workers`` slides
are being read at once. A cluster this process already joined (``ray.init`` in a notebook) is used as
it is; otherwise ``address=None`` starts a private local cluster for the run and stops it after, and an
address joins a running cluster and leaves it running. Ray is imported only here.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable

from kagglekit.errors import InvalidArgumentError, KagglekitError
from kagglekit.jobs.contract import Job, JobSetupError
from kagglekit.jobs.worker import Task, attempt, set_up

__all__ = ["run_on_ray"]

class _Worker:
    """The actor: the job, set up on the first slide (again after a restart)."""

    def __init__(self, job: Job):
        self.job = job
        self.setup_error: str | None = None
        self.ready = False

    def ping(self) -> bool:
        return True

    def run(self, task: Task) -> dict:
        if not self.ready:
            self.setup_error, self.ready = set_up(self.job), True
        if self.setup_error is not None:
            return {"slide": task.slide, "status": "fatal", "error": self.setup_error}
        return attempt(self.job, task)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InvalidArgumentError("engine='ray' needs Ray: pip install 'kagglekit[ray]' (or engine='local')") from None
    return ray


def _connect(ray, address: str | None, cpus: float) -> bool:
    """Join or start a cluster; True when this call connected (and so must disconnect)."""
    if ray.is_initialized():  # this process already joined a cluster (ray.init in a notebook, a test session)
        return False
    common = {"include_dashboard": False, "configure_logging": False, "log_to_driver": True, "namespace": "kagglekit"}
    if address is None:  # a private cluster on this machine: never attach to one RAY_ADDRESS names
        # The workers import what the driver imports (a notebook's or a test's own job classes).
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        ray.init(address="local", num_cpus=max(cpus, os.cpu_count() or 1), _node_ip_address="127.0.0.1",
                 runtime_env={"env_vars": env}, **common)
    else:
        ray.init(address=address, **common)
    return True


def _workers(ray, workers: int | None, cpus_per_worker: float, gpus_per_worker: float) -> int:
    """``workers``, or as many as the cluster holds; refused when they do not fit (they would wait forever)."""
    have = ray.cluster_resources()
    if workers is None:
        workers = int(have.get("GPU", 0) // gpus_per_worker) if gpus_per_worker else int(have.get("CPU", 0) // cpus_per_worker)
        workers = max(workers, 1)
    for what, each in (("CPU", cpus_per_worker), ("GPU", gpus_per_worker)):
        if each * workers > have.get(what, 0):
            raise InvalidArgumentError(
                f"{workers} worker(s) x {each} {what} need {each * workers:g} {what}s but the cluster has "
                f"{have.get(what, 0):g}; pass fewer workers, or less per worker, or join a larger cluster (address=)")
    return workers


def run_on_ray(job: Job, tasks: list[Task], record: Callable[[dict], None], *, retries: int, workers: int | None,
               cpus_per_worker: float, gpus_per_worker: float, address: str | None) -> tuple[float, int]:
    """Run ``tasks`` on ``workers`` actors (None: as many as fit), calling ``record(result)`` in this process
    as each slide ends (done, empty, or failed after ``1 + retries`` attempts); return the seconds spent
    starting up and the number of workers."""
    ray = _import_ray()
    start = time.perf_counter()
    connected = _connect(ray, address, (workers or 1) * cpus_per_worker)
    actors = []
    try:
        workers = _workers(ray, workers, cpus_per_worker, gpus_per_worker)
        remote = ray.remote(_Worker).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                                             max_restarts=-1, max_task_retries=0)
        actors = [remote.remote(job) for _ in range(min(workers, max(len(tasks), 1)))]
        ray.get([actor.ping.remote() for actor in actors])  # every worker process is up
        startup = time.perf_counter() - start
        queue, idle, in_flight, alive = deque(tasks), list(actors), {}, len(actors)
        while queue or any(task is not None for _, task in in_flight.values()):
            while queue and idle:
                actor, task = idle.pop(), queue.popleft()
                in_flight[actor.run.remote(task)] = (actor, task)
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            actor, task = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker process died (killed, out of memory, segfault)
                # Ray restarts it: ping it until it answers, so that no slide is sent to it while it is down
                if isinstance(exc, ray.exceptions.ActorDiedError) and task is None:  # gone for good (its node died)
                    alive -= 1
                    if not alive:
                        raise KagglekitError(f"every Ray worker died for good ({exc}); {len(queue)} slide(s) not run: "
                                             "check the cluster, then rerun to resume") from None
                    continue
                in_flight[actor.ping.remote()] = (actor, None)
                if task is None:
                    time.sleep(0.2)
                    continue
                result = {"slide": task.slide, "status": "failed", "attempts": task.attempt,
                          "error": f"worker died: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            else:
                idle.append(actor)
            if task is None:
                continue
            if result["status"] == "fatal":
                raise JobSetupError(f"{job.name}: setup failed on a worker, so no slide can run: {result['error']}")
            again = task.retry(result, retries)
            if again is not None:
                queue.append(again)
            else:
                record(result)
        return startup, workers
    finally:
        for actor in actors:
            ray.kill(actor)
        if connected:
            ray.shutdown()
