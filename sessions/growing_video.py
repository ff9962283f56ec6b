"""A video that grows while the run goes on: chunks that every surviving beam shares ("settled"
chunks: no later decision can drop them) are appended to `video.live.mp4` in the session folder.

The file is a fragmented mp4 with one fragment per frame, encoded without look-ahead, so a player
can open it during the run and a killed run leaves a playable file of everything that had settled.
Encoding runs on its own thread, reading settled chunks' frames back from the store, so neither the
chunk loop nor the session writer waits for it. When the run ends, the final pick's remaining
chunks are appended and the file replaces `video.mp4` in one rename.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

import imageio.v2 as imageio
from torch import Tensor

from engine.records import ChunkRecord
from sessions.lineage import lineage
from sessions.store import Session
from sessions.video import frames_hwc

LIVE_FILE, VIDEO_FILE = "video.live.mp4", "video.mp4"
WAIT_FOR_PREFIX = 100  # settled chunks re-encoded before a run starts; longer prefixes go in the background
_FFMPEG_PARAMS = [
    "-movflags",
    "+frag_every_frame+empty_moov+default_base_moof",
    "-tune",
    "zerolatency",
    "-flush_packets",
    "1",
]


class SettledChunks:
    """Which chunks every surviving beam descends from, given the records as they are committed.

    Holds the records after the settled point only; beams of a beam search merge back quickly, so
    that is a few chunks (a search whose beams never merge settles nothing until the end).
    """

    def __init__(self, settled: int, open_records: list[ChunkRecord]) -> None:
        self.settled = settled  # chunks 0..settled-1 are settled
        self._open = list(open_records)  # records of chunks settled.., in order

    @classmethod
    def of(cls, session: Session, head: int) -> SettledChunks:
        """The settled point of a session at `head`, reading records back from the head."""
        records: list[ChunkRecord] = []
        for k in range(head - 1, -1, -1):
            records.insert(0, ChunkRecord.from_json(session.record(k)))
            if len(records[0].beams) == 1 or k == 0:
                break
        tracker = cls(head - len(records), [])
        for record in records:
            tracker.add(record)
        return tracker

    def add(self, record: ChunkRecord) -> list[tuple[int, int]]:
        """Take the next committed chunk's record; return the newly settled (chunk, beam) pairs."""
        self._open.append(record)
        beams = set(range(len(record.beams)))
        lineage: list[set[int]] = []  # beam indices alive at each open chunk, newest first
        for rec in reversed(self._open):
            lineage.append(beams)
            beams = {p for b in beams if (p := rec.parent_beam(b)) is not None}
        lineage.reverse()
        last = max((i for i, alive in enumerate(lineage) if len(alive) == 1), default=None)
        if last is None:
            return []
        pairs, beam = [], next(iter(lineage[last]))
        for i in range(last, -1, -1):
            pairs.insert(0, (self.settled + i, beam))
            beam = self._open[i].parent_beam(beam) if i else None
        self._open = self._open[last + 1 :]
        self.settled += last + 1
        return pairs


class GrowingVideo:
    """Appends settled chunks to the live file on its own thread, in order."""

    def __init__(self, session: Session, fps: int) -> None:
        self.session = session
        self.path = session.path / LIVE_FILE
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-video")
        self._writer = imageio.get_writer(
            self.path, fps=fps, codec="libx264", quality=8, macro_block_size=8, ffmpeg_params=_FFMPEG_PARAMS
        )
        self._prefix: Future | None = None
        self._last: Future | None = None
        self.frames = 0

    def append_prefix(self, chunks: int) -> None:
        """Queue the first `chunks` chunks, all settled (every beam at the head shares them); a
        long session's prefix is re-encoded in the background while new chunks are made."""
        head = self.session.head
        self._prefix = self._last = self._pool.submit(
            lambda: self._write(list(enumerate(lineage(self.session, 0, head)))[:chunks], {})
        )

    def wait_for_prefix(self) -> None:
        if self._prefix is not None:
            self._prefix.result()

    def append(self, chunks: list[tuple[int, int]], in_hand: dict[int, Tensor]) -> None:
        """Queue (chunk, beam index at that chunk) pairs; `in_hand` maps a chunk to its uint8
        frames [beams, 3, F, H, W] when the caller has them, the rest are read from the store.
        Once any prefix is written this waits until the frames are in the encoder's pipe, so the
        caller can move HEAD knowing that a kill keeps them."""
        if self._prefix is not None and self._prefix.done():
            self._prefix.result()  # a damaged stored chunk in the prefix stops the run here
        if not chunks:
            return
        self._last = self._pool.submit(self._write, chunks, in_hand)
        if self._prefix is None or self._prefix.done():
            self._last.result()

    def _write(self, chunks: list[tuple[int, int]], in_hand: dict[int, Tensor]) -> None:
        for k, beam in chunks:
            frames = in_hand[k] if k in in_hand else self.session.chunk(k).frames
            for frame in frames_hwc(frames[beam]):
                self._writer.append_data(frame)
                self.frames += 1

    def finish(self, tail: list[tuple[int, int]]) -> int:
        """Append the final pick's remaining chunks and make the file `video.mp4`; returns its frames."""
        self.append(tail, {})
        self.close()
        os.replace(self.path, self.session.path / VIDEO_FILE)
        return self.frames

    def close(self) -> None:
        """Finish what is queued and close the file (it stays a playable live file)."""
        self._pool.shutdown(wait=True)
        try:
            if self._last is not None:
                self._last.result()
        finally:
            self._writer.close()


def rebuild_live_video(session: Session, fps: int) -> tuple[GrowingVideo, SettledChunks]:
    """A live file holding the session's settled chunks (re-encoded from the store), and the
    tracker that extends it as new chunks commit. A prefix of up to WAIT_FOR_PREFIX chunks is
    written before anything new is made, so a damaged stored chunk stops the run before it starts
    (as do damaged unsettled chunks, checked here); a longer prefix is re-encoded in the background
    and a damaged chunk in it stops the run at its next commit."""
    settled = SettledChunks.of(session, session.head)
    for k in range(settled.settled, session.head):
        session.chunk(k)  # read at the end (final pick and video): a damaged one stops the run now
    video = GrowingVideo(session, fps)
    if settled.settled:
        video.append_prefix(settled.settled)
        if settled.settled <= WAIT_FOR_PREFIX:
            try:
                video.wait_for_prefix()
            except BaseException:
                video.close()
                raise
    return video, settled
