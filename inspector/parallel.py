"""Analysis on every core and on a Dask cluster: tasks of (capture, partition).

A task is one capture (a group of files read in order as one, so the
rotated files of a mirror port stay one capture and a flow crossing a file
boundary stays one flow) and one partition of its flows
(``inspector.partition``). Each task reads every packet of its capture and
keeps its own flows; the ended flows' tables of every task go to one store
(``ClosedTables``, or the ``ReportSpool`` of streamed reports) and
``assemble`` makes the events and findings over all of them, so the result
is the ``Analysis`` one process makes.

Engines:

``run_local``  forked worker processes (they inherit the loaded modules and
               compiled kernels); ended flows stream back to this process
               as they end, so a worker holds its open flows only
``run_dask``   a Dask distributed cluster (``dask scheduler`` and ``dask
               worker`` with inspector installed); the files must be
               readable at the same paths on every worker (shared storage),
               and a task's tables come back when it is done
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from inspector.capture.inputs import Input
from inspector.capture.reader import CaptureReader, InputStats
from inspector.errors import ConfigError, InspectorError
from inspector.meters import default_meters
from inspector.text import file_name
from inspector.partition import Partition
from inspector.pipeline import ClosedFlows, ClosedTables, Pipeline
from inspector.timeouts import Timeouts
from inspector.watch import Watchlist

BYTES_PER_PARTITION = 32 * 1024 * 1024
"""A capture smaller than this per worker gets fewer partitions: each one
reads the whole capture, and a process costs more than it saves on small ones."""
COLLISIONS = "flow-key-collision"
PROGRESS_EVERY = 0.25  # seconds between a worker's progress messages
RESULTS_WAITING = 32  # messages (ended flows: up to Timeouts.batch flows each) sent and not yet taken


@dataclass(frozen=True)
class Task:
    """Partition ``partition`` of the flows of capture ``group`` (its files, in order)."""

    group: int
    paths: tuple[str, ...]  # absolute: a Dask worker runs elsewhere
    files: tuple[str, ...]  # as the reader of ``analyze`` names them (``inputs.file``)
    names: tuple[str, ...]  # as the user gave them (``flows.input``)
    partition: Partition
    watch: Watchlist
    timeouts: Timeouts
    detectors: bool = True
    secrets: bool = True


@dataclass
class _Reading:
    """Where each task is: bytes of its capture's files read and packets."""

    done: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)  # (group, partition) -> Read
    parts: dict[int, int] = field(default_factory=dict)  # capture group -> partitions

    def update(self, task: Task, read: Read) -> Read:
        """What was read over all captures: each capture counts once, as
        far as its partitions got on average."""
        self.done[task.group, task.partition.index] = read
        self.parts[task.group] = task.partition.count
        return Read(*(int(sum(r[i] / self.parts[g] for (g, _), r in self.done.items())) for i in range(3)))


class Read(NamedTuple):
    """How far a task (or all of them) got."""

    packets: int
    file_bytes: int
    files: int  # files read to their end


def plan(groups: Sequence[Sequence[Input]], workers: int, *, watch: Watchlist, timeouts: Timeouts,
         detectors: bool = True, secrets: bool = True) -> list[Task]:
    """Tasks for ``workers``: captures shared out whole while there are more
    of them than workers, else each cut in partitions (none smaller than
    ``BYTES_PER_PARTITION`` per worker), so every worker has work."""
    tasks = []
    per_group = max(1, math.ceil(workers / max(1, len(groups))))
    for number, inputs in enumerate(groups):
        parts = max(1, min(per_group, sum(one.size() for one in inputs) // BYTES_PER_PARTITION))
        paths, files = tuple(str(one.path.absolute()) for one in inputs), tuple(file_name(one.path) for one in inputs)
        names = tuple(one.name for one in inputs)
        tasks += [Task(number, paths, files, names, Partition(index, parts), watch, timeouts, detectors, secrets)
                  for index in range(parts)]
    return tasks


def run_task(task: Task, emit: Callable[[ClosedFlows], None],
             on_progress: Callable[[Read], None] | None = None) -> list[InputStats]:
    """One task's pipeline: ``emit`` hears the tables of its flows as they
    end; returns the stats of the capture's files (every task reads them all)."""
    done, files = 0, 0

    def readers() -> Iterator[CaptureReader]:
        nonlocal done, files
        for path, file in zip(task.paths, task.files):
            reader = CaptureReader(Path(path))
            reader.stats.file = file
            yield reader
            done += _size(Path(path))
            files += 1

    def on_batch(reader: CaptureReader, packets: int, _flows: int) -> None:
        if on_progress:
            on_progress(Read(packets, done + reader.file_bytes_read, files))

    def closed(part: ClosedFlows) -> None:
        if not part.interim:
            emit(part)

    pipeline = Pipeline(task.watch, list(task.names), meters=default_meters(detectors=task.detectors,
                                                                            secrets=task.secrets),
                        on_closed=closed, timeouts=task.timeouts, partition=task.partition,
                        capture=task.group)
    try:
        return pipeline.run(readers(), on_batch=on_batch)
    finally:
        # its flow table and meters call back into it: a cycle only a full collection frees, which seldom
        # comes; a worker runs task after task (100 files: 600 MB by the last), so let them go now
        pipeline.table, pipeline.meters = None, []


def merged_stats(tasks: list[Task], results: dict[int, list[InputStats]]) -> list[InputStats]:
    """The files' stats, capture by capture (``results``: task number ->
    stats): every partition read the same packets, so one partition's
    counts stand for all, except the flow-key collisions each partition
    found among its own flows."""
    stats: list[InputStats] = []
    for group in sorted({task.group for task in tasks}):
        numbers = [n for n, t in enumerate(tasks) if t.group == group]  # partition 0 first
        first = [replace(s, anomalies=s.anomalies.copy()) for s in results[numbers[0]]]
        collisions = sum(s.anomalies.get(COLLISIONS, 0) for n in numbers for s in results[n])
        for one in first:
            one.anomalies.pop(COLLISIONS, None)
        if collisions and first:
            first[-1].anomalies[COLLISIONS] = collisions
        stats += first
    return stats


def run_local(tasks: list[Task], workers: int, store: ClosedTables,
              on_progress: Callable[[Read], None] | None = None) -> list[InputStats]:
    """``tasks`` on ``workers`` forked processes; ended flows go to ``store``
    as they arrive. A worker's ``InspectorError`` (a bad file) is raised
    here; a worker that dies is an error too, never a silently short result."""
    context = multiprocessing.get_context("fork")
    # bounded: a worker ahead of this process waits instead of piling ended flows up in its memory
    todo, results = context.Queue(), context.Queue(maxsize=RESULTS_WAITING)
    for number, task in enumerate(tasks):
        todo.put((number, task))
    processes = [context.Process(target=_worker, args=(todo, results), name=f"inspector-worker-{i}", daemon=True)
                 for i in range(min(workers, len(tasks)))]
    for process in processes:
        todo.put(None)
        process.start()
    stats: dict[int, list[InputStats]] = {}
    progress = _Reading()
    try:
        while len(stats) < len(tasks):
            try:
                kind, number, payload = results.get(timeout=1.0)
            except queue.Empty:
                _check_alive(processes)
                continue
            if kind == "closed":
                store.add(payload)
            elif kind == "progress":
                if on_progress:
                    on_progress(progress.update(tasks[number], payload))
            elif kind == "done":
                stats[number] = payload
            elif kind == "error":
                raise payload
            else:
                raise InspectorError(f"a worker process failed on {', '.join(tasks[number].paths)}:\n{payload}")
    finally:
        for process in processes:
            if process.is_alive() and len(stats) < len(tasks):
                process.terminate()
            process.join()
        todo.close()
        results.close()
    return merged_stats(tasks, stats)




def _worker(todo: multiprocessing.Queue, results: multiprocessing.Queue) -> None:
    """A worker process: tasks until the ``None`` that ends them."""
    while (item := todo.get()) is not None:
        number, task = item
        last = 0.0

        def progress(read: Read) -> None:
            nonlocal last
            if time.monotonic() - last >= PROGRESS_EVERY:
                last = time.monotonic()
                results.put(("progress", number, read))

        try:
            stats = run_task(task, lambda closed: results.put(("closed", number, closed)), progress)
            results.put(("done", number, stats))
        except InspectorError as exc:
            results.put(("error", number, exc))
        except BaseException:  # noqa: BLE001 - told to the parent, which stops the run
            results.put(("crash", number, traceback.format_exc()))


def _check_alive(processes: list[multiprocessing.Process]) -> None:
    for process in processes:
        if process.exitcode not in (None, 0):
            raise InspectorError(f"worker process {process.name} died (exit code {process.exitcode}: "
                                 "killed, or out of memory?); no result was made")


def run_dask(scheduler: str, plan_for: Callable[[int], list[Task]], store: ClosedTables,
             on_progress: Callable[[Read], None] | None = None) -> list[InputStats]:
    """The tasks of ``plan_for(threads of the cluster)`` on the Dask
    distributed cluster at ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``);
    each task's tables come back when it ends."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigError("--scheduler needs Dask distributed: pip install 'inspector[dask]'") from None
    try:
        client = Client(scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
    stats: dict[int, list[InputStats]] = {}
    progress = _Reading()
    with client:
        tasks = plan_for(max(1, sum(client.nthreads().values())))
        futures = {client.submit(collect_task, task, pure=False): number for number, task in enumerate(tasks)}
        for future in as_completed(futures, loop=client.loop):
            number = futures[future]
            closed, task_stats = future.result()
            future.release()
            store.add(closed)
            stats[number] = task_stats
            if on_progress:
                task = tasks[number]
                on_progress(progress.update(task, Read(sum(s.packets for s in task_stats),
                                                       sum(_size(Path(p)) for p in task.paths), len(task.paths))))
    return merged_stats(tasks, stats)


def run_here(tasks: list[Task], store: ClosedTables,
             on_progress: Callable[[Read], None] | None = None) -> list[InputStats]:
    """``tasks`` one after the other in this process (one worker, several captures)."""
    stats: dict[int, list[InputStats]] = {}
    progress = _Reading()
    for number, task in enumerate(tasks):
        stats[number] = run_task(task, store.add, on_progress and (
            lambda read, task=task: on_progress(progress.update(task, read))))
    return merged_stats(tasks, stats)


def collect_task(task: Task) -> tuple[ClosedFlows, list[InputStats]]:
    """A task's ended flows as one ``ClosedFlows`` (what a Dask worker sends back)."""
    import pandas as pd

    from inspector.schema import SCHEMAS
    from inspector.tables import empty_frame

    kept = ClosedTables()
    stats = run_task(task, kept.add)
    tables = {name: pd.concat(parts, ignore_index=True) if parts else empty_frame(SCHEMAS[name])
              for name, parts in kept.tables().items()}
    return ClosedFlows(**tables), stats


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
