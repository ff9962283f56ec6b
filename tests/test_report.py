"""`streamt1 report`: what the page holds (read back from its JSON island), branch and plain
sessions, a 1,000-chunk session, and atomic rewrites under a concurrent reader."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from engine.config import StreamConfig
from engine.scaling.config import ScalingConfig
from sessions.lineage import final_beam, lineage
from sessions.report import ReportWriter, report_due, write_report
from sessions.report.html import DATA_ID
from sessions.report.thumbs import MAX_SHEET_CHUNKS
from sessions.report.write import atomic_write_text
from sessions.spec import Compute, PromptSwitch, RewardNames, SessionSpec
from sessions.store import STORE_DIR, Session
from streamt1_cli.app import app
from streamt1_cli.view import sparkline
from tests.helpers import FOX, cli, copy_of, runner

ISLAND = re.compile(rf'<script type="application/json" id="{DATA_ID}">(.*?)</script>', re.S)
MAX_BYTES_1000 = 3_000_000  # the stated bound for a 1,000-chunk report


def island(html: str) -> dict:
    return json.loads(ISLAND.search(html).group(1))


@pytest.fixture(scope="module")
def sessions(shared_three: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    paths = {name: root / name for name in ("t1", "branch", "plain")}
    copy_of(shared_three, paths["t1"])  # `new "a red fox" --chunks 3`; its reports are written into it
    cli(
        "branch",
        str(paths["t1"]),
        "--at",
        "2",
        "--to",
        str(paths["branch"]),
        "--chunks",
        "1",
        "--prompt",
        "a wolf",
        "--device",
        "cpu",
    )
    cli("new", FOX, "--chunks", "2", "--no-scaling", "--session", str(paths["plain"]), "--device", "cpu")
    return paths


def test_stream_t1_report_holds_candidates_survivors_path_and_thumbnails(sessions: dict[str, Path]):
    cli("report", str(sessions["t1"]))
    html = (sessions["t1"] / "report.html").read_text()
    data = island(html)["sessions"][0]
    session = Session.open(sessions["t1"])
    assert data["head"] == session.head == 3
    for k, chunk in enumerate(data["chunks"]):
        record = session.record(k)
        assert [(c["index"], c["parent"], c["fused"], c["kept"]) for c in chunk["candidates"]] == [
            (c["index"], c["parent"], c["fused"], c["kept"]) for c in record["candidates"]
        ]
        assert len(chunk["candidates"]) == 4
        survivors = sorted(c["index"] for c in chunk["candidates"] if c["kept"])
        assert survivors == sorted(b["candidate"] for b in record["beams"])
    assert data["final_path"] == lineage(session, final_beam(session), session.head)
    assert data["computes"] == [{"first": 0, "last": 2, "compute": {"device": "cpu", "dtype": "float32"}}]
    assert [t["chunk"] for t in data["contact_sheet"]] == [0, 1, 2]
    assert data["contact_sheet"][1]["href"] == f"video.mp4#t={(9 + 6) / 16:.3f}"  # chunk 1's middle frame
    assert html.count('<img alt="chunk ') == 3
    assert all(p["image"] for p in data["plots"].values())


def test_branch_report_shows_branch_point(sessions: dict[str, Path]):
    out = sessions["branch"].parent / "branch.html"
    cli("report", str(sessions["branch"]), "--out", str(out), "--thumbs", "2")
    html = out.read_text()
    data = island(html)["sessions"][0]
    assert [t["chunk"] for t in data["contact_sheet"]] == [0, 0, 1, 1, 2, 2]  # more thumbnails on request
    assert data["ancestors"] == [{"path": str(sessions["t1"].resolve()), "at": 2}]
    assert "branch point</td><td><b>chunk 2</b>" in html
    assert [c["prompt"] for c in data["chunks"]] == [FOX, FOX, "a wolf"]
    assert data["video"] == "branch/video.mp4"  # relative to the report's folder


def test_plain_report_has_no_reward_plots_and_says_why(sessions: dict[str, Path]):
    path = write_report(sessions["plain"])
    html = path.read_text()
    data = island(html)["sessions"][0]
    assert not data["scored"]
    assert data["plots"]["Rewards"] == {"image": False, "note": data["plots"]["Rewards"]["note"]}
    assert "plain LongLive session (--no-scaling)" in data["plots"]["Rewards"]["note"]
    assert 'alt="Rewards"' not in html and "plain LongLive session (--no-scaling)" in html
    assert data["plots"]["Time per phase"]["image"]
    assert len(data["contact_sheet"]) == 2


def test_compare_puts_sessions_side_by_side(sessions: dict[str, Path]):
    out = sessions["t1"].parent / "compare.html"
    cli("report", str(sessions["t1"]), str(sessions["branch"]), str(sessions["plain"]), "--out", str(out))
    html = out.read_text()
    data = island(html)
    assert [s["name"] for s in data["sessions"]] == ["t1", "branch", "plain"]
    assert "Rewards of the final picks" in html and "Contact sheets by chunk" in html
    result = runner.invoke(app, ["report", str(sessions["t1"]), str(sessions["plain"])])
    assert result.exit_code == 2 and "give --out" in result.output


def test_bad_input_is_a_one_line_error(sessions: dict[str, Path], tmp_path: Path):
    spec_before = (sessions["t1"] / "session.toml").read_bytes()
    damaged = tmp_path / "damaged"
    shutil.copytree(sessions["t1"], damaged)
    (damaged / STORE_DIR / "zarr.json").unlink()
    (damaged / "report.html").unlink(missing_ok=True)
    for args, needle in (
        (["report", str(damaged)], "is damaged"),
        (["report", str(tmp_path / "nowhere")], "no session at"),
        (["report", str(sessions["t1"]), "--out", str(tmp_path / "no" / "r.html")], "does not exist"),
        (["report", str(sessions["t1"]), "--out", str(tmp_path)], "is a folder"),
        (["report", str(sessions["t1"]), "--thumbs", "0"], "--thumbs must be"),
        (["report", str(sessions["t1"]), "--out", str(sessions["t1"] / "session.toml")], "is not a streamt1 report"),
    ):
        result = runner.invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], result.output
    assert not (damaged / "report.html").exists()
    assert (sessions["t1"] / "session.toml").read_bytes() == spec_before  # a report never replaces other files
    again = tmp_path / "again.html"
    for _ in range(2):  # a report it wrote is written over
        cli("report", str(sessions["t1"]), "--out", str(again))


def synthetic_session(path: Path, chunks: int) -> Session:
    """A Stream-T1 session of synthetic records (4 candidates, 2 beams, sink events) and 4x4 frames."""
    spec = SessionSpec(
        preset="tiny",
        seed=7,
        stream=StreamConfig(),
        prompts=(PromptSwitch(0, "synthetic"),),
        scaling=ScalingConfig(),
        rewards=RewardNames("proxy", "proxy"),
    )
    session = Session.create(path, spec)
    rng = random.Random(0)
    events = [None, None]
    for k in range(chunks):
        cands = [
            {
                "index": i,
                "parent": None if k == 0 else i // 2,
                "child": i % 2,
                "seed": k * 1000 + i,
                "short": rng.random(),
                "long": rng.random(),
                "fused": rng.random(),
                "kept": False,
                "flag": None,
            }
            for i in range(4)
        ]
        kept = sorted(range(4), key=lambda i: -cands[i]["fused"])[:2]
        beams = []
        for i in kept:
            cands[i].update(kept=True, flag=rng.choice(["discard", "ema", "append"]))
            parent = cands[i]["parent"]
            event = events[parent] if parent is not None else None
            if k >= 3:
                event = {"start_frame": 3 * (k - 2), "route": rng.choice(["discard", "ema", "append"])}
            beams.append({"candidate": i, "sink_frames": 3 + 3 * rng.randrange(5), "last_sink_event": event})
        events = [b["last_sink_event"] for b in beams]
        record = {
            "chunk": k,
            "start_frame": 3 * k,
            "alpha": min(k / 6, 0.4),
            "candidates": cands,
            "beams": beams,
            "seconds": {"denoise": rng.random(), "decode": rng.random(), "long_reward": rng.random()},
            "prompt": "synthetic",
        }
        frames = torch.randint(0, 256, (2, 3, 9 if k == 0 else 12, 4, 4), dtype=torch.uint8)
        session.commit(
            record, torch.zeros(2, 1, 1, 1, 1), torch.zeros(2, 1, 1, 1, 1), frames, Compute("cpu", "float32")
        )
    return session


def test_thousand_chunk_report_is_fast_and_small(tmp_path: Path):
    session = synthetic_session(tmp_path / "long", 1000)
    started = time.perf_counter()
    path = write_report(session.path)
    seconds = time.perf_counter() - started
    assert seconds < 10, f"{seconds:.1f} s"
    size = path.stat().st_size
    assert size < MAX_BYTES_1000, f"{size} bytes"
    data = island(path.read_text())["sessions"][0]
    assert len(data["chunks"]) == 1000 and len(data["final_path"]) == 1000
    sheet = [t["chunk"] for t in data["contact_sheet"]]
    assert len(sheet) == MAX_SHEET_CHUNKS and sheet[0] == 0 and sheet[-1] == 999
    assert {e["route"] for e in data["evictions"]} == {"discard", "ema", "append"}
    assert "The last 48 of 1000 chunks" in data["plots"]["Beam tree"]["note"]


def test_report_rewrite_is_atomic_under_a_concurrent_reader(sessions: dict[str, Path], tmp_path: Path):
    out = tmp_path / "report.html"
    pages = [f"<!doctype html><p>{c * 2_000_000}</p></html>\n" for c in "ab"]
    atomic_write_text(out, pages[0])
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(out.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            atomic_write_text(out, pages[i % 2])
        writer = ReportWriter(sessions["t1"], out)
        for head in range(1, 4):
            writer.after_commit(head)  # returns at once; renders on the writer's own thread
        assert writer.close() == out
    finally:
        stop.set()
        reader.join()

    def whole(page: str) -> bool:
        if page in pages:
            return True
        found = ISLAND.search(page)
        return (
            page.endswith("</html>\n") and found is not None and json.loads(found.group(1))["sessions"][0]["head"] == 3
        )

    assert all(whole(page) for page in seen)
    assert len(seen & set(pages)) == 2  # both versions were read while being replaced
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_report_due_thins_out_for_long_sessions():
    due = [h for h in range(1, 1001) if report_due(h)]
    assert due[:32] == list(range(1, 33))
    assert [h for h in due if 32 < h <= 64] == list(range(34, 65, 2))
    assert all(h % 32 == 0 for h in due if h > 512)
    assert len(due) < 32 + 16 * 5


def test_sparkline_shows_the_trend_of_the_last_values():
    assert sparkline([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5.0, 1.0, 1.0, 9.0], width=3) == "▁▁█"
    assert sparkline([2.0, 2.0]) == "▁▁" and sparkline([]) == ""


def test_report_imports_no_model_code():
    code = (
        "import sys, sessions.report; "
        "print(sorted({'diffusers', 'transformers', 'sessions.runner'} & set(sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_run_renders_its_report_in_another_process(sessions: dict[str, Path], tmp_path: Path):
    """Rendering holds the GIL for long stretches: it must not share the chunk loop's interpreter."""
    writer = ReportWriter(sessions["t1"], tmp_path / "report.html")
    writer.after_commit(1)
    pid = writer.renderer_pid
    assert pid is not None and pid != os.getpid()
    writer.after_commit(2)  # the first still renders: skipped, not queued
    assert writer.renderer_pid in (pid, None)
    assert writer.close() == tmp_path / "report.html"
    assert writer.renderer_pid is None
    assert ISLAND.search((tmp_path / "report.html").read_text()) is not None


def test_a_failed_rewrite_is_reported_at_close(tmp_path: Path):
    writer = ReportWriter(tmp_path / "no-session", tmp_path / "report.html")
    writer.after_commit(1)
    with pytest.raises(OSError, match="no-session"):
        writer.close()
