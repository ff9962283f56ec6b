"""Sessions under attack (issue 8): kills at the worst moment, full and read-only disks, moved
chunks, hand edits, permissions and odd targets. Every case drives the CLI; each ends in a whole
session and, for bad input or a failed write, one red line."""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import pytest
from rich.cells import get_character_cell_size
from typer.testing import Result

from sessions.growing_video import LIVE_FILE, VIDEO_FILE
from sessions.records import read_chunk_log
from sessions.run import LOG_FILE
from sessions.store import HEAD_FILE, LOCK_FILE, SPEC_FILE, STORE_DIR, Session
from streamt1_cli.app import app
from tests.helpers import FOX, assert_same_run, cli, copy_of, one_line, one_line_error, runner, tree_digest, unchanged

WHALE = "a blue whale"


@pytest.fixture(scope="module")
def shared_whale(shared_three: Path, tmp_path_factory) -> Path:
    path = copy_of(shared_three, tmp_path_factory.mktemp("whale") / "s")
    cli("continue", str(path), "--chunks", "3", "--prompt", WHALE)
    return path


@pytest.fixture
def whale(shared_whale: Path) -> Iterator[Path]:
    """`three` continued uninterrupted by 3 chunks under a new prompt: what every resumed run must
    equal (read-only)."""
    yield from unchanged(shared_whale)


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamt1_cli", *args, "--quiet"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def whole_chunks(path: Path) -> int:
    """HEAD, once every committed chunk was read back (right after a kill, when leftovers may remain)."""
    session = Session.open(path)
    for k in range(session.head):
        session.chunk(k)
    return session.head


def whole(path: Path) -> int:
    """HEAD, once every committed chunk was read back, the log matched and nothing half-written is left."""
    head = whole_chunks(path)
    if (path / LOG_FILE).is_file():
        assert [r["chunk"] for r in read_chunk_log(path / LOG_FILE)] == list(range(head))
    assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp") or ".partial-" in p.name]
    return head


def mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(exist_ok=True)
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True).returncode
        == 0
    )


class Disk:
    """A folder on a small disk that `fill` leaves `leave` bytes free on: a tmpfs where this test may
    mount one, else a seam (the video, PNG and chunk-log writers raise ENOSPC once filled)."""

    def __init__(self, path: Path, real: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path, self.real, self._monkeypatch = path, real, monkeypatch

    def fill(self, leave: int) -> None:
        self.free()
        if not self.real:

            def no_space(*args, **kwargs):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            for target in (
                "sessions.video.imageio.get_writer",
                "sessions.video.iio.imwrite",
                "sessions.records.atomic_write",
            ):
                self._monkeypatch.setattr(target, no_space)
            return
        with open(self.path / ".filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
            os.ftruncate(f.fileno(), max(0, f.tell() - leave))

    def free(self) -> None:
        (self.path / ".filler").unlink(missing_ok=True)
        self._monkeypatch.undo()


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    where = tmp_path / "disk"
    real = mount_tmpfs(where, "size=8m")
    try:
        yield Disk(where, real, monkeypatch)
    finally:
        if real:
            subprocess.run(["umount", "-l", str(where)], check=True)


def as_nobody(*args: str) -> tuple[int, str]:
    """Run the CLI where file modes bind: as ourselves if we are not root, else in a forked child
    that dropped root for `nobody` (skipped where that is impossible)."""
    if os.geteuid() != 0:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody to drop root for")
    # modules that are imported on first use cannot be read as nobody (they live under /root)
    get_character_cell_size("字")  # rich's table of character widths
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            result = runner.invoke(app, list(args))
            crash = "" if result.exit_code in (0, 2) else f"\n{result.exception!r}"  # shown by a failed assert
            payload = [result.exit_code, result.output + crash]
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which skips
            payload = [None, repr(exc)]
        os.write(write, json.dumps(payload).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        code, output = json.loads(f.read())
    os.waitpid(pid, 0)
    if code is None:
        pytest.skip(f"cannot run the CLI as nobody: {output}")
    return code, output


@pytest.fixture
def public(tmp_path: Path) -> Iterator[Path]:
    """A folder that `nobody` can reach (pytest's own temporary folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="streamt1-public-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def run_error(result: Result) -> str:
    """A run that failed after it started: its one error line ends what it printed."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert result.exit_code == 2 and errors == lines[-1:] and "Traceback" not in result.output, result.output
    return errors[0]


# --- 1. a prompt switch is committed with its first chunk ----------------------------------------
def test_a_kill_right_after_head_moves_keeps_the_prompt_switch(three: Path, whale: Path, tmp_path: Path):
    """SIGKILL the moment HEAD reads 4 (before this fix, session.toml still lacked the whale then);
    the resumed run is bitwise the uninterrupted one."""
    behind = 0
    for trial in range(3):
        path = copy_of(three, tmp_path / f"t{trial}")
        proc = spawn("continue", str(path), "--chunks", "3", "--prompt", WHALE)
        while proc.poll() is None and (path / HEAD_FILE).read_text().strip() == "3":
            time.sleep(0.001)
        proc.kill()
        proc.communicate(timeout=60)
        behind += WHALE not in (path / SPEC_FILE).read_text()
        head = Session.open(path).head
        assert Session.open(path).spec.schedule == {0: FOX, 3: WHALE}
        cli("continue", str(path), "--chunks", str(max(1, 6 - head)))
        assert_same_run(whale, path)
        whole(path)  # what the kill left was removed under the lock
        assert WHALE in (path / SPEC_FILE).read_text()  # and session.toml caught up
    print(f"{behind} of 3 kills left session.toml behind HEAD")


def test_a_stale_spec_or_a_stray_temporary_folder_loses_no_switch(three: Path, whale: Path, tmp_path: Path):
    path = copy_of(three, tmp_path / "s")
    old_spec = (path / SPEC_FILE).read_text()
    (path / f"{SPEC_FILE}.tmp").mkdir()  # what an older streamt1's kill could leave
    cli("continue", str(path), "--chunks", "1", "--prompt", WHALE)
    (path / SPEC_FILE).write_text(old_spec)  # exactly what a kill between HEAD and the rewrite leaves
    assert "from chunk 3: 'a blue whale'" in cli("show", str(path))
    cli("continue", str(path), "--chunks", "2")
    assert_same_run(whale, path)


# --- 2, 6, 7. full and read-only disks ------------------------------------------------------------
def test_export_to_a_full_disk_says_so_and_leaves_nothing(three: Path, disk: Disk):
    disk.fill(leave=40_000)
    video, frames = disk.path / "out.mp4", disk.path / "frames"
    assert "failed" in one_line_error("export", str(three), str(video))
    assert "failed" in one_line_error("export", str(three), str(frames))
    assert not video.exists() and not frames.exists()
    assert [p.name for p in disk.path.iterdir()] in ([".filler"], [])  # no partial file or folder


def test_continue_on_a_full_disk_stops_at_a_whole_chunk(three: Path, disk: Disk):
    """Free space for nothing, the chunk log, the log but not a chunk, a chunk but not the video, and
    plenty: each run ends in success or one line, with the session whole."""
    path = copy_of(three, disk.path / "s")
    outcomes = []
    for leave in (0, 8_000, 200_000, 450_000, 3_000_000):
        disk.fill(leave)
        head = Session.open(path).head
        result = runner.invoke(app, ["continue", str(path), "--chunks", "1", "--quiet"])
        outcomes.append("ok" if result.exit_code == 0 else run_error(result))
        now = whole(path)
        assert now in (head, head + 1)
        if now == head + 1 and outcomes[-1] != "ok":  # the chunk is in; only the video failed
            assert "chunks are committed" in outcomes[-1]
    disk.free()
    assert any("No space left" in o for o in outcomes), outcomes
    if disk.real:
        assert outcomes[-1] == "ok", outcomes
        assert iio.imread(path / VIDEO_FILE).shape[0] == 9 + 12 * (Session.open(path).head - 1)


def test_export_to_a_read_only_disk_is_one_line(three: Path, tmp_path: Path):
    ro = tmp_path / "ro"
    if not mount_tmpfs(ro, "ro,size=1m"):
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        assert "Read-only file system" in one_line_error("export", str(three), str(ro / "x.mp4"))
        assert "Read-only file system" in one_line_error("export", str(three), str(ro / "frames"))
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=True)


# --- 3. a kill while video.mp4 is written ---------------------------------------------------------
def test_a_kill_while_the_video_is_written_keeps_a_whole_video(three: Path, tmp_path: Path):
    """SIGKILL once this run's live video is being written: video.mp4 is still the previous whole
    video (or, had the rename just happened, the new whole one), never a truncated file."""
    path = copy_of(three, tmp_path / "s")
    frames = iio.imread(path / VIDEO_FILE).shape[0]
    hits = 0
    live = path / LIVE_FILE  # the video grows there, and replaces video.mp4 in one rename at the end
    for _ in range(3):
        started = time.time()
        proc = spawn("continue", str(path), "--chunks", "1")
        while proc.poll() is None and not (live.exists() and live.stat().st_mtime > started):
            time.sleep(0.001)
        hits += proc.poll() is None
        proc.kill()
        proc.communicate(timeout=60)
        head = whole_chunks(path)
        previous, frames = frames, iio.imread(path / VIDEO_FILE).shape[0]
        assert frames in (previous, 9 + 12 * (head - 1))
    assert hits >= 1  # at least one kill landed while the video was being written


# --- 4. chunks tied to their place ----------------------------------------------------------------
def test_moved_or_copied_chunks_read_as_damaged(three: Path, tmp_path: Path):
    def chunk_dir(s: Path, k: int | str) -> Path:
        return s / STORE_DIR / "chunks" / str(k)

    swapped = copy_of(three, tmp_path / "swapped")
    os.rename(chunk_dir(swapped, 1), chunk_dir(swapped, "x"))
    os.rename(chunk_dir(swapped, 2), chunk_dir(swapped, 1))
    os.rename(chunk_dir(swapped, "x"), chunk_dir(swapped, 2))
    copied = copy_of(three, tmp_path / "copied")
    shutil.rmtree(chunk_dir(copied, 2))
    shutil.copytree(chunk_dir(copied, 1), chunk_dir(copied, 2))
    foreign = copy_of(three, tmp_path / "foreign")  # the same chunks under another session's id
    spec = foreign / SPEC_FILE
    spec.write_text(spec.read_text().replace(Session.open(three).spec.id, "0" * 32))
    for session in (swapped, copied, foreign):
        before = tree_digest(session)
        assert "is damaged" in one_line_error("show", str(session))
        assert "is damaged" in one_line_error("export", str(session), str(tmp_path / "x.mp4"))
        assert "is damaged" in one_line_error("continue", str(session), "--chunks", "1", "--quiet")
        assert tree_digest(session) == before
    assert not (tmp_path / "x.mp4").exists()


# --- 5. one HEAD per command ----------------------------------------------------------------------
def test_show_during_a_run_is_consistent(three: Path, tmp_path: Path):
    path = copy_of(three, tmp_path / "s")
    proc = spawn("continue", str(path), "--chunks", "4")
    heads = set()
    while proc.poll() is None:
        info = json.loads(cli("show", str(path), "--json"))
        assert info["chunks"] == len(info["records"]) == len(info["lineage"]), info["chunks"]
        heads.add(info["chunks"])
    assert proc.wait() == 0 and heads <= set(range(3, 8))


# --- 8, 12. permissions and advice ----------------------------------------------------------------
def test_permissions_are_one_line_and_list_skips_what_it_cannot_read(three: Path, public: Path):
    mine, locked = copy_of(three, public / "mine"), copy_of(three, public / "locked")
    cli("show", str(mine))  # as root first: every module a read needs is loaded before the fork
    (locked / SPEC_FILE).chmod(0o000)
    code, output = as_nobody("list", str(public))
    assert code == 0 and f"skipped {locked}: cannot read" in output and output.count("Stream-T1") == 1, output
    assert "cannot read" in one_line(*as_nobody("show", str(locked)))
    assert "not yours to write" in one_line(*as_nobody("continue", str(mine), "--chunks", "1"))
    (mine / HEAD_FILE).chmod(0o000)
    assert f"cannot read {mine / HEAD_FILE} (Permission denied)" in one_line(*as_nobody("show", str(mine)))


def test_errors_give_the_right_advice(three: Path, tmp_path: Path):
    parent, child = copy_of(three, tmp_path / "parent"), tmp_path / "child"
    cli("branch", str(parent), "--at", "1", "--to", str(child), "--chunks", "1")
    os.rename(parent, tmp_path / "moved")
    message = one_line_error("show", str(child))
    assert "which is gone (moved or deleted)" in message and "streamt1 new" not in message
    afile = tmp_path / "afile"
    afile.write_text("")
    assert "is a file, not a session folder" in one_line_error("continue", str(afile))
    garbled = copy_of(three, tmp_path / "garbled")
    (garbled / HEAD_FILE).write_text("x")
    assert "is corrupt" in one_line_error("show", str(garbled))
    mount = tmp_path / "mount"
    if mount_tmpfs(mount, "size=1m"):
        try:
            message = one_line_error("new", FOX, "--session", str(mount))
            assert "is a mount point" in message and str(mount / "session") in message
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_branch_moved_or_copied_with_its_parent_takes_it_along(three: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    parent = copy_of(three, runs / "fox")
    cli("branch", str(parent), "--at", "1", "--to", str(runs / "fox-b"), "--chunks", "1")
    backup = copy_of(runs, tmp_path / "backup")
    os.rename(runs, tmp_path / "renamed")
    moved, copied = Session.open(tmp_path / "renamed" / "fox-b"), Session.open(backup / "fox-b")
    assert moved.parent.path == tmp_path / "renamed" / "fox" and copied.parent.path == backup / "fox"
    assert_same_run(tmp_path / "renamed" / "fox-b", backup / "fox-b")
    # Another session where the parent stood beside the branch: the absolute path decides again
    shutil.rmtree(backup / "fox")
    cli("new", FOX, "--session", str(backup / "fox"), "--chunks", "1")
    assert "which is gone (moved or deleted)" in one_line_error("show", str(backup / "fox-b"))
    os.rename(tmp_path / "renamed", runs)
    assert Session.open(backup / "fox-b").parent.path == runs / "fox"


# --- 9. final.json --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, needle",
    [
        ("garbage", "JSONDecodeError"),
        ("[]", "not a {head, beam} pair"),
        ('{"head": 3, "beam": "x"}', "not a {head, beam} pair"),
        ('{"head": 3, "beam": 7}', "beam 7, but the last chunk has beams 0..1"),
    ],
)
def test_a_broken_final_pick_is_one_line(three: Path, tmp_path: Path, text: str, needle: str):
    session = copy_of(three, tmp_path / "s")
    (session / "final.json").write_text(text)
    for args in (("show", str(session)), ("export", str(session), str(tmp_path / "x.mp4"))):
        message = one_line_error(*args)
        assert "final.json is not a final pick" in message and needle in message and "--beam" not in message


# --- 10. hand edits -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "edit, needle",
    [
        (("window_chunks = 10", "window_chunks = 2.5"), "scaling.window_chunks = 2.5 is not a whole number"),
        (("long_threshold = 0.2", "long_threshold = nan"), "scaling.long_threshold = nan is not a finite number"),
        (("shift = 5.0", "shift = 0"), "timestep shift"),
        (("fps = 16", "fps = 100000"), "fps must be"),
        (("    250.0,\n", "    2500.0,\n"), "denoising timesteps must lie in (0, 1000]"),
        (
            ("    250.0,\n", "    true,\n"),
            "stream.timesteps = [1000.0, 750.0, 500.0, True] is not a list of finite numbers",
        ),
        (("[stream]\n", "[stream]\nwidth = 64\n"), "stream.width is not a setting"),
        (('positions = "auto"', 'positions = "auto"\nmodel_dir = "weights"'), "model_dir is not an absolute path"),
    ],
)
def test_hand_edits_that_looked_valid_are_refused(three: Path, tmp_path: Path, edit: tuple[str, str], needle: str):
    session = copy_of(three, tmp_path / "s")
    spec = session / SPEC_FILE
    spec.write_text(spec.read_text().replace(*edit))
    message = one_line_error("continue", str(session), "--chunks", "1")
    assert "corrupt or foreign" in message and needle in message


def test_edited_records_and_folders_in_the_way_are_one_line(three: Path, tmp_path: Path):
    edited = copy_of(three, tmp_path / "edited")
    meta = edited / STORE_DIR / "chunks" / "1" / "zarr.json"
    raw = json.loads(meta.read_text())
    record = json.loads(raw["attributes"]["record"])
    record["beams"][0]["candidate"] = 99
    raw["attributes"]["record"] = json.dumps(record)
    meta.write_text(json.dumps(raw))
    assert "record does not match its digest" in one_line_error("show", str(edited))

    for name in (LOCK_FILE, LOG_FILE, VIDEO_FILE):
        session = copy_of(three, tmp_path / name.strip("."))
        (session / name).unlink(missing_ok=True)
        (session / name).mkdir()
        message = run_error(runner.invoke(app, ["continue", str(session), "--chunks", "1", "--quiet"]))
        assert name in message and "Is a directory" in message, message
        whole(session)


# --- 13, 14. export and session targets ------------------------------------------------------------
def test_one_rule_for_export_targets(three: Path, tmp_path: Path):
    video = tmp_path / "x.mp4"
    cli("export", str(three), str(video), "--upto", "1")
    assert "add --force" in one_line_error("export", str(three), str(video))
    cli("export", str(three), str(video), "--force")
    assert iio.imread(video).shape[0] == 33

    frames = tmp_path / "frames.d"  # a dot in a folder's name is fine
    cli("export", str(three), str(frames), "--upto", "1")
    assert "add --force" in one_line_error("export", str(three), str(frames))
    cli("export", str(three), str(frames), "--force")
    assert len(list(frames.glob("frame_*.png"))) == 33
    (frames / "notes.txt").write_text("mine")
    assert "other files" in one_line_error("export", str(three), str(frames), "--force")
    assert (frames / "notes.txt").exists()

    (tmp_path / "dir.mp4").mkdir()
    assert "is a folder" in one_line_error("export", str(three), str(tmp_path / "dir.mp4"), "--force")
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_no_session_inside_another(three: Path):
    before = tree_digest(three)
    for args in (
        ("branch", str(three), "--at", "1", "--to", str(three / STORE_DIR / "chunks" / "99")),
        ("new", FOX, "--session", str(three / "inner")),
    ):
        assert f"inside the session {three.resolve()}" in one_line_error(*args)
    assert tree_digest(three) == before


# --- 11. SIGTERM and SIGHUP stop like Ctrl-C --------------------------------------------------------
SLOW_SECOND_COMMIT = (
    "import sys, time\n"
    "from sessions.store import Session\n"
    "from streamt1_cli.launch import main\n"
    "commit = Session.commit\n"
    "def slow(self, record, *arrays):\n"
    "    if record['chunk'] == 1:\n"
    "        print('committing', flush=True)\n"
    "        time.sleep(1)  # the signal arrives while this chunk is queued\n"
    "    commit(self, record, *arrays)\n"
    "Session.commit = slow\n"
    "sys.argv = ['streamt1', 'new', 'a red fox', '--chunks', '6', '--session', sys.argv[1], '--quiet']\n"
    "main()\n"
)


@pytest.mark.parametrize(
    "sig, said",
    [(signal.SIGTERM, b"stopped by SIGTERM"), (signal.SIGHUP, b"stopped by SIGHUP"), (signal.SIGINT, b"interrupted")],
)
def test_stop_signals_write_the_queued_chunk_and_say_how_to_resume(tmp_path: Path, sig: int, said: bytes):
    path = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SECOND_COMMIT, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout.readline().strip() == b"committing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    head = whole(path)
    assert proc.returncode == 128 + sig, err.decode()[-500:]
    assert head >= 2  # chunk 1 was queued for the disk when the signal came, and was written
    assert said in err and f"holds {head} whole chunks".encode() in err
    assert f"streamt1 continue {path} --chunks {6 - head}` for the {6 - head} left of the 6".encode() in err
    assert f"streamt1 export {path} OUT.mp4".encode() in err  # the video so far, without resuming
    assert b"Traceback" not in err


def test_an_ignored_hangup_leaves_the_run_going(tmp_path: Path):
    """`nohup streamt1 new ...` ignores SIGHUP, so closing the terminal must not stop the run."""
    path = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SECOND_COMMIT, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    assert proc.stdout.readline().strip() == b"committing"
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-500:]
    assert whole(path) == 6
