"""Candidate-parallel sessions and prompt-parallel batches, started as users start them: torchrun
with the gloo backend on CPU. While the ranks are no more than the beams (top-k = 2 here), one
beam's children share a rank and a batch, so a candidate is the same computation as on one process
and results are compared bitwise. With 4 ranks each candidate is denoised alone, a batch of one
instead of two, which moves CPU kernels' last bits (~5e-7 in the latents): there the decisions must
match and the numbers agree within float32 rounding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.records import ChunkRecord
from sessions.store import Session

SCALED = [
    "--beam-size",
    "2",
    "--top-k",
    "2",
    "--seed",
    "3",
    "--max-sink",
    "6",
    "--horizon",
    "12",
]  # one fusion ramp for every length


def launch(
    nproc: int, *args: str, nodes: tuple[int, int] | None = None, port: int = 0, background: bool = False
) -> subprocess.CompletedProcess | subprocess.Popen:
    """`torchrun --nproc-per-node N $(which streamt1) ARGS`; one process runs it without torchrun.
    `nodes=(node_rank, nnodes)` starts one node of a multi-node job through c10d rendezvous."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cli = ["-m", "streamt1_cli.launch", *args, "--quiet", "--device", "cpu"]
    if nproc == 1 and nodes is None:
        cmd = [sys.executable, *cli]
    elif nodes is None:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *cli]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            str(nodes[1]),
            "--node-rank",
            str(nodes[0]),
            "--nproc-per-node",
            str(nproc),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"localhost:{port}",
            "--rdzv-id",
            "mismatch",
            *cli,
        ]
    if background:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def decisions(path: Path) -> list[tuple]:
    """Per chunk: each candidate's seed, scores, kept flag and sink flag, and the beams' sink state."""
    session = Session.open(path)
    out = []
    for k in range(session.head):
        r = ChunkRecord.from_json(session.record(k))
        out.append(
            (
                [(c.seed, c.short, c.long, c.fused, c.kept, c.flag) for c in r.candidates],
                [(b.candidate, b.sink_frames, b.last_sink_event) for b in r.beams],
            )
        )
    return out


def assert_same_chunks(a: Path, b: Path, exact: bool = True) -> None:
    sa, sb = Session.open(a), Session.open(b)
    assert sa.head == sb.head
    da, db = decisions(a), decisions(b)
    if exact:
        assert da == db
    else:  # same candidates kept, same sink routes; scores within float32 rounding
        for (cands_a, beams_a), (cands_b, beams_b) in zip(da, db):
            assert beams_a == beams_b
            for x, y in zip(cands_a, cands_b):
                assert (x[0], x[4], x[5]) == (y[0], y[4], y[5])
                assert x[1:4] == pytest.approx(y[1:4], rel=1e-5, abs=1e-6)
    for k in range(sa.head):
        ca, cb = sa.chunk(k), sb.chunk(k)
        assert torch.equal(ca.noise, cb.noise), f"noise differs at chunk {k}"
        if exact:
            assert torch.equal(ca.latents, cb.latents) and torch.equal(ca.frames, cb.frames), f"chunk {k} differs"
        else:
            assert torch.allclose(ca.latents, cb.latents, rtol=0, atol=1e-5), f"latents differ at chunk {k}"
            assert (ca.frames.int() - cb.frames.int()).abs().max() <= 1, f"frames differ at chunk {k}"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("par") / "one"
    ok(launch(1, "new", "a red fox", "--session", str(path), "--chunks", "4", *SCALED))
    return path


@pytest.mark.parametrize("nproc", [2, 4])
def test_candidate_parallel_equals_one_process(one_process: Path, tmp_path: Path, nproc: int):
    path = tmp_path / f"ranks{nproc}"
    ok(launch(nproc, "new", "a red fox", "--session", str(path), "--chunks", "4", *SCALED))
    assert_same_chunks(one_process, path, exact=nproc <= 2)
    ranks = {c.rank for k in range(4) for c in ChunkRecord.from_json(Session.open(path).record(k)).candidates}
    assert ranks == set(range(nproc))  # every rank ran candidates, and the records say which
    routes = {b[2].route for chunk in decisions(path) for b in chunk[1] if b[2] is not None}
    assert routes, "the run should evict chunks, so sink routing was exercised"


def test_continue_across_world_sizes(one_process: Path, tmp_path: Path):
    path = tmp_path / "mixed"
    ok(launch(2, "new", "a red fox", "--session", str(path), "--chunks", "2", *SCALED))
    ok(launch(1, "continue", str(path), "--chunks", "1"))
    ok(launch(2, "continue", str(path), "--chunks", "1"))
    assert_same_chunks(one_process, path)  # 2 -> 1 -> 2 processes: bitwise the 1-process run


def test_plain_sessions_refuse_several_processes(tmp_path: Path):
    result = launch(2, "new", "a red fox", "--session", str(tmp_path / "p"), "--chunks", "1", "--no-scaling")
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert errors and "one GPU runs it" in errors[0]
    assert not (tmp_path / "p").exists()


def test_mismatched_ranks_are_refused(tmp_path: Path):
    port = 29500 + os.getpid() % 2000
    path = tmp_path / "m"
    nodes = [
        launch(
            1,
            "new",
            "a red fox",
            "--session",
            str(path),
            "--chunks",
            "1",
            *SCALED[:4],
            "--seed",
            str(seed),
            nodes=(node, 2),
            port=port,
            background=True,
        )
        for node, seed in ((0, 1), (1, 2))
    ]
    outputs = [p.communicate(timeout=1200)[0] for p in nodes]
    assert all(p.returncode != 0 for p in nodes)
    lines = [line for out in outputs for line in out.splitlines() if line.startswith("error:")]
    assert any("differs from rank" in line and "command" in line for line in lines), outputs
    assert not path.exists()  # refused before the first chunk: the new session is removed


# --- batches -----------------------------------------------------------------------------------------
PROMPTS = ["a red fox in snow", "a city at night", "waves on a beach", "a bird over a lake"]


def prompt_file(folder: Path) -> Path:
    path = folder / "prompts.txt"
    path.write_text("".join(f"{p}\n" for p in PROMPTS))
    return path


def batch_sessions(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def test_batch_covers_every_prompt_once(tmp_path: Path):
    root = tmp_path / "root"
    out = ok(launch(2, "batch", str(prompt_file(tmp_path)), "--root", str(root), "--chunks", "2", "--no-scaling"))
    made = [line.split()[-1] for line in out.splitlines() if line.startswith("rank ") and " made " in line]
    assert sorted(made) == sorted(p.name for p in batch_sessions(root)) and len(made) == len(PROMPTS)
    for path, prompt in zip(batch_sessions(root), PROMPTS):
        s = Session.open(path)
        assert s.head == 2 and s.spec.schedule == {0: prompt}
    again = ok(launch(2, "batch", str(prompt_file(tmp_path)), "--root", str(root), "--chunks", "2", "--no-scaling"))
    assert sum(" made " in line or " continued " in line for line in again.splitlines()) == 0  # all skipped
    assert all(name in again for name in made)  # the summary table lists every session


def rank_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of the workers torchrun started (read from their environment)."""
    out = {}
    for child in subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split():
        try:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = next((int(e.split(b"=")[1]) for e in env if e.startswith(b"RANK=")), None)
        if rank is not None:
            out[rank] = int(child)
    return out


def test_batch_killed_and_run_again_loses_and_repeats_nothing(tmp_path: Path):
    root, prompts = tmp_path / "root", prompt_file(tmp_path)
    args = ("batch", str(prompts), "--root", str(root), "--chunks", "3", "--no-scaling")
    job = launch(2, *args, background=True)
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:  # kill rank 1 once one of its sessions holds a chunk
        sessions = [p for p in root.glob("000[13]-*") if (p / "HEAD").exists()]
        if any(int((p / "HEAD").read_text()) >= 1 for p in sessions):
            break
        time.sleep(0.2)
    pids = rank_pids(job.pid)
    os.kill(pids[1], signal.SIGKILL)
    job.communicate(timeout=600)
    assert job.returncode != 0
    unfinished = [p for p in batch_sessions(root) if int((p / "HEAD").read_text()) < 3]
    assert unfinished, "the kill should have stopped a session before its end"
    ok(launch(2, *args))
    single = tmp_path / "single"
    for path, prompt in zip(batch_sessions(root), PROMPTS):
        s = Session.open(path)
        assert s.head == 3 and [s.record(k)["chunk"] for k in range(3)] == [0, 1, 2]
        ok(launch(1, "new", prompt, "--session", str(single / path.name), "--chunks", "3", "--no-scaling"))
        assert_same_chunks(single / path.name, path)
