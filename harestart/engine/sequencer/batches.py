"""Batch parallelism: consecutive replica restarts of one batch run at the same time.

A batch always runs to its end: a restart that was sent is never abandoned halfway.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from harestart.domain.plan.model import Plan, Step

Indexed = tuple[int, Step]


def batches(plan: Plan) -> list[list[Indexed]]:
    """Steps in order; consecutive replica restarts of one batch form one group."""
    out: list[list[Indexed]] = []
    for index, step in enumerate(plan.steps):
        prev = out[-1][-1][1] if out else None
        if step.batch is not None and prev is not None and prev.batch == step.batch:
            out[-1].append((index, step))
        else:
            out.append([(index, step)])
    return out


def run_batch(
    batch: list[Indexed], one: Callable[[int, Step], BaseException | None]
) -> list[tuple[Indexed, BaseException]]:
    """Run ``one`` for each step (in parallel for several); the steps that failed, with why.

    Adapters log through their own loggers; each thread runs in a copy of the caller's
    contextvars, so their events carry group and step too."""
    if len(batch) == 1:
        results = [one(*batch[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            futures = [pool.submit(contextvars.copy_context().run, one, i, st) for i, st in batch]
            results = [f.result() for f in futures]
    return [(b, r) for b, r in zip(batch, results, strict=True) if r is not None]
