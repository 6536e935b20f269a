"""Two processes (torchrun, the launcher under ``accelerate launch``; gloo on this CPU) split the documents,
write one record shard set per rank, and merge into exactly the records and results of one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from visheads_eval.records import load_records

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts

BIN = Path(sys.executable).parent
TASK = "pointqa_visual_general"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _lmms_eval(out: Path, processes: int) -> None:
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
        ]
        if processes > 1
        else []
    )
    command = [
        *launcher,
        str(BIN / "lmms_eval"),
        "--model",
        "llava_visheads",
        "--model_args",
        f"pretrained=visheads-tiny,record={out / 'rec'},mask=L2H0+L3H1",
        "--tasks",
        TASK,
        "--limit",
        "20",
        "--batch_size",
        "4",
        "--output_path",
        str(out / "out"),
        "--log_samples",
        "--verbosity",
        "WARNING",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_merge_into_the_records_and_results_of_one(tmp_path: Path) -> None:
    _lmms_eval(tmp_path / "one", 1)
    _lmms_eval(tmp_path / "two", 2)
    one, two = load_records(tmp_path / "one" / "rec"), load_records(tmp_path / "two" / "rec")
    assert one.ranks == [0] and two.ranks == [0, 1]
    shards = sorted(path.name for path in (tmp_path / "two" / "rec" / "shards").iterdir())
    assert [name.split("-")[0] for name in shards] == ["rank0", "rank1"], shards
    keys = list(zip(one.meta["task"], one.meta["doc_id"], strict=True))
    order = {key: row for row, key in enumerate(zip(two.meta["task"], two.meta["doc_id"], strict=True))}
    assert sorted(order) == sorted(keys) and len(keys) == 20
    rows = [order[key] for key in keys]
    for name in ("image_attn", "region_attn", "text_attn", "concentration"):
        np.testing.assert_allclose(two.stat(name)[rows], one.stat(name), atol=1e-4, err_msg=name)
    assert list(two.meta["answer"].to_numpy()[rows]) == list(one.meta["answer"])

    (first,), (merged,) = (list((tmp_path / run / "out").glob("*/*_results.json")) for run in ("one", "two"))
    first, merged = json.loads(first.read_text()), json.loads(merged.read_text())
    assert merged["results"][TASK]["pointqa_acc,none"] == first["results"][TASK]["pointqa_acc,none"]
    assert merged["visheads"]["mask"]["heads"] == first["visheads"]["mask"]["heads"] == ["L2H0", "L3H1"]
    samples = [
        sorted((s["doc_id"], s["filtered_resps"]) for s in map(json.loads, path.read_text().splitlines()))
        for path in (next((tmp_path / run / "out").glob("*/*_samples_*.jsonl")) for run in ("one", "two"))
    ]
    assert samples[0] == samples[1] and len(samples[0]) == 20
