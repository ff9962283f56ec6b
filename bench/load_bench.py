"""Start-up cost of `streamt1 new` at real size: the longlive preset's networks and, with
`--rewards`, both reward models, loaded from a weights folder onto a device as `SessionRun.load`
loads them. Per part: seconds, and the process's peak host memory, two ways: peak resident set
(VmHWM, which also counts the weight files' cached pages while they are mapped) and peak anonymous
memory (RssAnon sampled every 10 ms: memory that cannot be dropped to make room).

    python bench/load_bench.py --model-dir DIR [--device cuda] [--rewards] [--cold] [--json OUT.json]

A weights folder of random values at real size: bench/write_model_dir.py.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import torch

from engine.models.factory import load_models
from engine.models.presets import PRESETS
from engine.rewards.registry import build_scorers


def status_kib(field: str) -> int:
    """A memory field of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class AnonPeak:
    """The peak of RssAnon while the block runs, sampled on a thread."""

    def __enter__(self) -> AnonPeak:
        self.peak_kib, self._stop = status_kib("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_kib = max(self.peak_kib, status_kib("RssAnon"))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, status_kib("RssAnon"))


def evict_cached_pages(folder: Path) -> None:
    """Drop the page cache of every file under `folder` (no root needed), so the next load reads
    from the disk, as the first start after a reboot or a download does."""
    os.sync()
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(part: str, load, device: torch.device) -> tuple[object, dict]:
    with AnonPeak() as anon:
        start = time.perf_counter()
        out = load()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    row = {
        "part": part,
        "seconds": seconds,
        "peak_anon_gib": anon.peak_kib / 2**20,
        "vmhwm_gib": status_kib("VmHWM") / 2**20,
    }
    print(f"{part:<14}{seconds:>9.1f} s{row['peak_anon_gib']:>10.2f} GiB{row['vmhwm_gib']:>10.2f} GiB", flush=True)
    return out, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--preset", default="longlive")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rewards", action="store_true", help="also HPSv3 and VideoReward")
    parser.add_argument("--cold", action="store_true", help="evict the files' cached pages before each part")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"{'part':<14}{'load':>11}{'peak anon':>14}{'peak RSS':>14}")
    rows = []
    if args.cold:
        evict_cached_pages(args.model_dir)
    _, row = timed("networks", lambda: load_models(PRESETS[args.preset], args.model_dir, device, dtype), device)
    rows.append(row)
    if args.rewards:
        if args.cold:
            evict_cached_pages(args.model_dir)
        _, row = timed(
            "reward models",
            lambda: build_scorers("hpsv3", "videoreward", model_dir=args.model_dir, device=device, dtype=dtype),
            device,
        )
        rows.append(row)
    total = sum(r["seconds"] for r in rows)
    print(f"total {total:.1f} s on {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "rows": rows, "total_s": total}, indent=1))


if __name__ == "__main__":
    main()
