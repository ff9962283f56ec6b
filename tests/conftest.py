"""Fixtures the test modules share: the tiny networks and sessions generated once per test run.

A shared session is made once (session scope) and handed to each test through a function-scoped
fixture that checks, after the test, that not one of its files changed: a test that needs to change
a session works on `copy_of` it (tests/helpers.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan

from engine.models.factory import Models, random_models
from engine.models.presets import TINY
from tests.helpers import FOX, cli, unchanged

# A suite started in the background of a script (`pytest &`) inherits Ctrl-C ignored, and so would
# every child it spawns: the tests that press Ctrl-C on a child need a terminal's default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_models() -> Models:
    """The tiny preset's random-init networks on the CPU in float32, as `streamt1 new` builds them."""
    return random_models(TINY, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def tiny_vae() -> AutoencoderKLWan:
    """A tiny-preset Wan VAE, seeded (the streaming decoder never changes the module it drives)."""
    torch.manual_seed(0)
    return AutoencoderKLWan(**TINY.vae).eval()


@pytest.fixture(scope="session")
def shared_three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("three") / "s"
    cli("new", FOX, "--chunks", "3", "--session", str(path))
    return path


@pytest.fixture
def three(shared_three: Path) -> Iterator[Path]:
    """`new "a red fox" --chunks 3` (Stream-T1, 2 beams), read-only."""
    yield from unchanged(shared_three)


@pytest.fixture(scope="session")
def shared_full6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("full6") / "s"
    cli("new", FOX, "--chunks", "6", "--session", str(path))
    return path


@pytest.fixture
def full6(shared_full6: Path) -> Iterator[Path]:
    """`new "a red fox" --chunks 6` (Stream-T1, fusion horizon 18 latent frames), uninterrupted,
    read-only: what every resumed, branched or killed-and-continued run of it must equal."""
    yield from unchanged(shared_full6)
