"""Many records on one event loop: a bounded window of records in flight, results as they finish.

Memory follows the window (a few times the request concurrency), never the number of records:
input is pulled only when a slot frees up, and with `ordered` a finished record waits in the
reorder buffer, holding its slot, until every record before it has been emitted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..errors import RunStopped
from .inputs import InputItem
from .results import RecordResult

_END = object()


async def stream_records(
    run_one: Callable[[InputItem], Awaitable[RecordResult]],
    items: AsyncIterator[InputItem],
    *,
    window: int,
    ordered: bool = False,
    admit: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[list[RecordResult]]:
    """Yield the records' results in batches (all that finished together), so the caller can make
    them durable in one write; after a RunStopped, finish what is in flight, yield it, then raise.
    `admit`, when given, is awaited before each record starts (the request gate's `room`)."""
    slots = asyncio.Semaphore(window)
    finished: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()
    stops: list[RunStopped] = []
    workers: set[asyncio.Task] = set()

    async def work(sequence: int, item: InputItem) -> None:
        try:
            result: Any = await run_one(item)
        except RunStopped as exc:
            stops.append(exc)
            result = None
        except BaseException as exc:  # an unexpected failure reaches the caller, not a lost task
            result = exc
        finished.put_nowait((sequence, result))

    async def produce() -> None:
        count = 0
        try:
            async for item in items:
                await slots.acquire()
                if admit is not None and not stops:  # a stopped run starts nothing more: no need to wait
                    await admit()
                if stops:
                    slots.release()
                    break
                task = asyncio.create_task(work(count, item))
                workers.add(task)
                task.add_done_callback(workers.discard)
                count += 1
        except BaseException as exc:
            finished.put_nowait((_END, exc))
            raise
        finished.put_nowait((_END, count))

    producer = asyncio.create_task(produce())
    total: int | None = None
    received = 0
    next_sequence = 0
    buffer: dict[int, Any] = {}
    failure: BaseException | None = None
    try:
        while (total is None or received < total) and failure is None:
            arrived = [await finished.get()]
            while not finished.empty():
                arrived.append(finished.get_nowait())
            batch: list[RecordResult] = []
            for sequence, result in arrived:
                if sequence is _END:
                    if isinstance(result, BaseException):
                        failure = result
                    else:
                        total = result
                    continue
                received += 1
                if isinstance(result, BaseException):
                    failure = failure or result
                if not ordered:
                    slots.release()
                    if isinstance(result, RecordResult):
                        batch.append(result)
                    continue
                buffer[sequence] = result
                while next_sequence in buffer:
                    ready = buffer.pop(next_sequence)
                    next_sequence += 1
                    slots.release()
                    if isinstance(ready, RecordResult):
                        batch.append(ready)
            if batch:
                yield batch
    finally:
        producer.cancel()
        for task in list(workers):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(producer, *workers, return_exceptions=True)
    if failure is not None:
        raise failure
    if stops:
        raise stops[0]
