"""A session written by an earlier streamt1 of the current format (3) still opens, shows and resumes
exactly: tests/fixtures/format3_session was made by commit d021eaf, the last one before the typed
session spec (sessions/spec.py), with

    streamt1 new --script (a red fox from chunk 0, a blue bird from chunk 2) --chunks 2 --horizon 9
        --seed 7 --beam-size 2 --top-k 1 --device cpu --session format3_session

(tiny preset, float32), then its video.mp4, report.html and store.zarr/snapshots were deleted to keep
it small: `continue` replays the two chunks instead of loading a snapshot, and writes the video and
the report again. Its session.toml has the old form: three [stream] keys and no model_dir.

Why the bitwise check is conditional: the fixture's latents come from that machine's CPU kernels,
and the tiny preset's float32 results are not promised to be bitwise the same on other CPUs (or
torch builds), whose matrix kernels may sum in another order. So what does not depend on the
machine is always checked: the spec, head, records and stored arrays read back as written, and
`continue` adds chunk 2 under the script's second prompt without touching chunks 0..1. The resumed
chunk is compared bitwise with an uninterrupted run made now only where this machine reproduces the
fixture's own chunks exactly; elsewhere the same comparison runs between two runs made here (two
chunks continued by one against three uninterrupted), which is what resuming exactly means there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from engine.config import StreamConfig
from engine.positions import PositionMode
from engine.scaling.config import ScalingConfig
from sessions.run import LOG_FILE
from sessions.spec import Compute, PromptSwitch, RewardNames
from sessions.store import SPEC_FILE, Session
from tests.test_sessions import assert_same_run, cli, tree_digest

FIXTURE = Path(__file__).parent / "fixtures" / "format3_session"
SCRIPT = '[[prompt]]\nat_chunk = 0\nprompt = "a red fox"\n[[prompt]]\nat_chunk = 2\nprompt = "a blue bird"\n'
SETTINGS = (
    "--horizon",
    "9",
    "--seed",
    "7",
    "--beam-size",
    "2",
    "--top-k",
    "1",
    "--device",
    "cpu",
    "--dtype",
    "float32",
)
SHOW_KEYS = {
    "path",
    "preset",
    "untrained",
    "seed",
    "scaling",
    "rewards",
    "prompts",
    "parent",
    "chunks",
    "final_beam",
    "lineage",
    "disk_bytes",
    "disk_bytes_per_chunk",
    "real_size_bytes_per_chunk",
    "real_size_bytes_30s",
    "real_size_bytes_per_hour",
    "positions",
    "snapshot_every",
    "snapshots_kept",
    "snapshots",
    "snapshot_bytes",
    "real_size_snapshot_bytes",
    "records",
}


def new_run(path: Path, script: Path, chunks: int) -> Path:
    cli("new", "--script", str(script), "--chunks", str(chunks), "--session", str(path), *SETTINGS)
    return path


def same_chunks(a: Session, b: Session, upto: int) -> bool:
    return all(
        torch.equal(getattr(a.chunk(k), name), getattr(b.chunk(k), name))
        for k in range(upto)
        for name in ("latents", "noise", "frames")
    )


def test_a_format3_session_opens_shows_and_resumes_exactly(tmp_path: Path):
    before = tree_digest(FIXTURE)
    old = Session.open(FIXTURE)
    assert old.head == 2
    spec = old.spec
    assert (spec.preset, spec.seed, spec.positions, spec.model_dir) == ("tiny", 7, PositionMode.AUTO, None)
    assert spec.stream == StreamConfig()  # the three stored sizes, the rest the defaults it was made with
    assert spec.scaling == ScalingConfig(beam_size=2, top_k=1, horizon_frames=9)
    assert spec.rewards == RewardNames("proxy", "proxy") and spec.compute == Compute("cpu", "float32")
    assert spec.prompts == (PromptSwitch(0, "a red fox"), PromptSwitch(2, "a blue bird"))
    assert (spec.snapshot_every, spec.snapshots_kept, spec.parent) == (40, 2, None)

    # its records do not say how each chunk was computed: read back, they say what its spec says
    logged = [json.loads(line) for line in (FIXTURE / LOG_FILE).read_text().splitlines()]
    assert all("compute" not in record for record in logged)
    logged = [record | {"compute": {"device": "cpu", "dtype": "float32"}} for record in logged]
    assert list(old.records()) == logged and old.computed_on(1) == spec.compute
    info = json.loads(cli("show", "--json", str(FIXTURE)))
    assert set(info) == SHOW_KEYS
    assert info["records"] == logged and info["chunks"] == 2 and info["final_beam"] == 0 and info["lineage"] == [0, 0]
    assert info["prompts"] == [{"from_chunk": 0, "prompt": "a red fox"}, {"from_chunk": 2, "prompt": "a blue bird"}]
    assert info["scaling"] == {
        "beam_size": 2,
        "top_k": 1,
        "noise_sigma": -0.1,
        "short_threshold": 0.0,
        "long_threshold": 0.2,
        "fusion_cap": 0.4,
        "window_chunks": 10,
        "max_sink_frames": 15,
        "ema_alpha": 0.999,
        "horizon_frames": 9,
        "reward_inputs": "video",  # made before the option: it scored the streamed video
    }
    assert (info["rewards"], info["parent"], info["positions"], info["snapshots"]) == (
        ["proxy", "proxy"],
        None,
        "auto",
        [],
    )
    assert tree_digest(FIXTURE) == before  # reading wrote nothing

    resumed = Path(shutil.copytree(FIXTURE, tmp_path / "resumed"))
    cli("continue", str(resumed), "--chunks", "1", "--device", "cpu", "--dtype", "float32")
    after = Session.open(resumed)
    assert after.head == 3 and after.record(2)["prompt"] == "a blue bird"
    assert same_chunks(old, after, 2)  # the committed chunks are untouched
    assert after.spec == spec and (resumed / SPEC_FILE).read_text() == (FIXTURE / SPEC_FILE).read_text()
    assert [json.loads(line) for line in (resumed / LOG_FILE).read_text().splitlines()][:2] == logged

    script = tmp_path / "script.toml"
    script.write_text(SCRIPT)
    unbroken = Session.open(new_run(tmp_path / "unbroken", script, 3))
    if same_chunks(old, unbroken, 2):  # this machine's kernels made the fixture's chunks: compare with it
        assert_same_run(unbroken.path, resumed)
    else:  # other kernels: the fixture's chunk 2 cannot be predicted here, so resume a run made here
        split = new_run(tmp_path / "split", script, 2)
        cli("continue", str(split), "--chunks", "1", "--device", "cpu", "--dtype", "float32")
        assert_same_run(unbroken.path, split)
