"""Dataset chunks rendered as Ray tasks (``python -m renderer.dataset ... --ray [ADDRESS]``).

Each chunk is ``renderer.dataset.render_chunk``: a pure function of its chunk index and seed,
so a task anywhere on the cluster renders the bytes the single-process command would (at the
same torch thread count, which travels with the task). The driver keeps a bounded window of
tasks in flight (twice the cluster's CPUs) and writes results in chunk order, so ``meta.json``'s
``done`` count stays exact and an interrupted run resumes as the plain command does. Ray is an
optional extra (``pip install -e '.[ray]'``), imported only here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

import numpy as np

from renderer.dataset import render_chunk


def ray_chunks(address: str | None = None, window: int | None = None,
               ) -> Callable[[list[tuple]], Iterator[dict[str, np.ndarray]]]:
    """A ``chunks`` function for ``write_dataset`` that runs on Ray: connects to the cluster at
    ``address`` (None: starts a local one, or joins the one ``ray.init`` finds already running
    in this process)."""

    def run(todo: list[tuple]) -> Iterator[dict[str, np.ndarray]]:
        import ray

        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        task = ray.remote(num_cpus=1)(render_chunk)
        size = window or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending: deque = deque()
        queue = iter(todo)
        for args in queue:
            pending.append(task.remote(*args))
            if len(pending) >= size:
                yield ray.get(pending.popleft())
        while pending:
            yield ray.get(pending.popleft())

    return run
