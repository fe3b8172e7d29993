"""Partitioned analysis: worker processes and a Dask cluster make the tables one process makes.

Every shipped capture (tunnels, VLANs, cut snaplen, mid-flow starts) is
analysed in several flow partitions on forked processes and compared, table
by table, with a single-process run; rotated files (split by Wireshark's
editcap) stay one capture; a real Dask scheduler and two workers on
127.0.0.1 run the same tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pandas.testing import assert_frame_equal

import inspector
from inspector import parallel
from inspector.capture.inputs import inputs_of
from inspector.cli import main
from inspector.errors import ConfigError, InspectorError
from inspector.partition import Partition, partition_of
from inspector.pipeline import ClosedTables
from inspector.schema import SCHEMAS
from inspector.timeouts import DEFAULT_TIMEOUTS
from inspector.watch import Watchlist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reference"))
from make_reference import runs  # noqa: E402

RUNS = runs()
CAPTURES = ROOT / "captures"
PLAIN = CAPTURES / "qemu-plain.pcap.gz"
SSH = CAPTURES / "ssh-bulk.pcap.gz"


@pytest.fixture(autouse=True)
def _small_partitions(monkeypatch):
    """Partition even the small shipped captures (the default keeps ~32 MB per worker)."""
    monkeypatch.setattr(parallel, "BYTES_PER_PARTITION", 1)
    monkeypatch.chdir(ROOT)


def assert_same_analysis(one: inspector.Analysis, other: inspector.Analysis) -> None:
    for table in SCHEMAS:
        assert_frame_equal(getattr(one, table), getattr(other, table), obj=table)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_three_workers_make_the_tables_of_one_process(name):
    paths = [p.relative_to(ROOT) for p in RUNS[name]]
    single = inspector.analyze(paths)
    assert_same_analysis(inspector.analyze(paths, workers=3), single)


def test_partitions_split_the_flows_exactly():
    """Each flow is analysed in exactly one partition: the partitions' flows add up to all of them."""
    single = inspector.analyze(RUNS["all-main"])
    tasks = parallel.plan([inputs_of(RUNS["all-main"])], 3, watch=Watchlist.default(), timeouts=DEFAULT_TIMEOUTS)
    assert [t.partition for t in tasks] == [Partition(i, 3) for i in range(3)]
    uids = []
    for task in tasks:
        store = ClosedTables()
        parallel.run_task(task, store.add)
        uids.append({uid for part in store.tables()["flows"] for uid in part["uid"]})
    assert all(uids), "every partition got flows"
    assert sum(map(len, uids)) == len(set().union(*uids)) == len(single.flows)


def test_partition_of_spreads_keys_and_keeps_undecoded_packets_in_one():
    keys = np.random.default_rng(1).integers(1, 2**63, 100_000, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    counts = np.bincount(partition_of(keys, 4), minlength=4)
    assert counts.min() > 0.95 * len(keys) / 4
    assert partition_of(np.zeros(3, dtype=np.uint64), 4).tolist() == [0, 0, 0]


@pytest.fixture(scope="module")
def rotated(tmp_path_factory) -> Path:
    """qemu-plain split by editcap into files of 30 packets (98 in all), as a rotating capture writes them."""
    folder = tmp_path_factory.mktemp("rotated")
    subprocess.run(["editcap", "-F", "pcap", "-c", "30", str(PLAIN), str(folder / "plain.pcap")], check=True)
    assert len(list(folder.iterdir())) >= 3
    return folder


def test_rotated_files_in_a_folder_are_one_capture(rotated):
    whole = inspector.analyze(PLAIN)
    for workers in (1, 2):
        split = inspector.analyze(rotated, workers=workers)
        assert len(split.inputs) == len(list(rotated.iterdir()))
        assert split.inputs["packets"].sum() == whole.inputs["packets"].sum()
        columns = [c for c in SCHEMAS["flows"] if c != "input"]  # the file a flow was first seen in
        assert_frame_equal(split.flows[columns], whole.flows[columns])
        for table in ("windows", "evidence", "events", "findings", "secrets", "byte_histograms"):
            assert_frame_equal(getattr(split, table), getattr(whole, table), obj=table)


def test_a_folder_reads_in_natural_order(tmp_path):
    for number in (10, 9, 1):
        shutil.copy(PLAIN, tmp_path / f"cap-{number}.pcap.gz")
    (tmp_path / "notes.txt").write_text("not a capture")
    assert [one.name for one in inputs_of(tmp_path)] == [str(tmp_path / f"cap-{n}.pcap.gz") for n in (1, 9, 10)]
    assert [Path(one.name).name for one in inputs_of(str(tmp_path / "cap-*.pcap.gz"))] == \
        ["cap-1.pcap.gz", "cap-9.pcap.gz", "cap-10.pcap.gz"]


def test_group_by_file_analyses_each_capture_alone(tmp_path):
    shutil.copy(PLAIN, tmp_path / "sensor-a.pcap.gz")
    shutil.copy(PLAIN, tmp_path / "sensor-b.pcap.gz")  # the same packets seen by two sensors
    alone = inspector.analyze(PLAIN)
    apart = inspector.analyze(tmp_path, group_by="file", workers=2)
    assert len(apart.flows) == 2 * len(alone.flows)
    assert apart.flows["input"].value_counts().tolist() == [len(alone.flows)] * 2
    assert apart.events["flows"].tolist() == [2]  # the same migration (hosts, time) seen by both sensors
    assert_same_analysis(inspector.analyze(tmp_path, group_by="file"), apart)


def test_group_by_folder(tmp_path):
    for sensor in ("a", "b"):
        (tmp_path / sensor).mkdir()
        shutil.copy(PLAIN, tmp_path / sensor / "x.pcap.gz")
    result = inspector.analyze([tmp_path / "a", tmp_path / "b"], group_by="folder", workers=2)
    assert len(result.flows) == 2 * len(inspector.analyze(PLAIN).flows)


def test_workers_need_files_by_path():
    with open(PLAIN, "rb") as handle, pytest.raises(ConfigError, match="by their path"):
        inspector.analyze(handle, workers=2)
    with pytest.raises(ConfigError, match="workers"):
        inspector.analyze(PLAIN, workers=0)


def test_a_bad_file_in_a_worker_is_the_usual_one_line_error(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    result = subprocess.run([sys.executable, "-m", "inspector", "analyze", str(PLAIN), str(bad), "--group-by", "file",
                             "--workers", "2", "--quiet"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"inspector: error: {bad}: not a pcap or pcapng capture (starts with "
                                          f"{b'not '.hex()})"]


def test_a_worker_that_dies_fails_the_run(monkeypatch):
    monkeypatch.setattr(parallel, "run_task", lambda *args, **kwargs: os._exit(9))
    with pytest.raises(InspectorError, match="died"):
        inspector.analyze(RUNS["all-main"], workers=2)


def test_cli_workers_write_the_same_json(tmp_path):
    args = ["analyze", str(PLAIN), str(SSH), "--group-by", "file", "--quiet", "--ssh-ports", "22,2222"]
    for workers in ("1", "2"):
        result = CliRunner().invoke(main, [*args, "--workers", workers, "--json", str(tmp_path / f"{workers}.json")])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "1.json").read_bytes() == (tmp_path / "2.json").read_bytes()
    assert len(json.loads((tmp_path / "2.json").read_text())["inputs"]) == 2


def test_progress_counts_each_capture_once():
    seen = []
    inspector.analyze([PLAIN, SSH], workers=2, group_by="file", on_progress=seen.append)
    assert seen and seen[-1].file_bytes <= seen[-1].file_bytes_total
    assert {p.files_total for p in seen} == {2} and max(p.files for p in seen) <= 2
    assert max(p.packets for p in seen) <= inspector.analyze([PLAIN, SSH]).inputs["packets"].sum()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A real Dask scheduler and two single-threaded workers on 127.0.0.1, run from another folder."""
    pytest.importorskip("distributed")
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    processes = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], cwd=folder,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
             "--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"], cwd=folder,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(30)


@pytest.mark.slow
def test_a_dask_cluster_makes_the_tables_of_one_process(dask_cluster):
    assert dask_cluster.startswith("tcp://127.0.0.1:")
    paths = [p.relative_to(ROOT) for p in RUNS["all-main"]]  # relative here; the workers run elsewhere
    assert_same_analysis(inspector.analyze(paths, scheduler=dask_cluster), inspector.analyze(paths))


@pytest.mark.slow
def test_cli_on_a_dask_cluster(dask_cluster, tmp_path):
    args = ["analyze", str(PLAIN.relative_to(ROOT)), "--quiet"]
    assert CliRunner().invoke(main, [*args, "--json", str(tmp_path / "one.json"), "--workers", "1"]).exit_code == 0
    result = CliRunner().invoke(main, [*args, "--json", str(tmp_path / "dask.json"), "--scheduler", dask_cluster])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "dask.json").read_bytes()
    missing = CliRunner().invoke(main, ["analyze", str(PLAIN), "--scheduler", "tcp://127.0.0.1:9", "--quiet"])
    assert missing.exit_code != 0 and "cannot reach the Dask scheduler" in missing.output
