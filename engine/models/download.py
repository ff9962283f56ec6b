"""Fetch the real weights from the Hugging Face Hub into the model-dir layout the loaders expect.

    MODEL_DIR/Wan2.1-T2V-1.3B/              original Wan layout   (Wan-AI/Wan2.1-T2V-1.3B)
    MODEL_DIR/Wan2.1-T2V-1.3B-Diffusers/    diffusers layout      (Wan-AI/Wan2.1-T2V-1.3B-Diffusers)
    MODEL_DIR/LongLive/models/longlive_base.pt, lora.pt           (Efficient-Large-Model/LongLive)

The plan is plain data so the CLI can print it (and tests can check it) without any network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import StreamT1Error, WeightsError

WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
WAN_DIFFUSERS_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
LONGLIVE_REPO = "Efficient-Large-Model/LongLive"

WAN_DIR = "Wan2.1-T2V-1.3B"
WAN_DIFFUSERS_DIR = "Wan2.1-T2V-1.3B-Diffusers"
LONGLIVE_DIR = "LongLive"

# Original Wan layout, relative to MODEL_DIR/Wan2.1-T2V-1.3B.
WAN_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_TOKENIZER_DIR = "google/umt5-xxl"
WAN_VAE_FILE = "Wan2.1_VAE.pth"
# LongLive, relative to MODEL_DIR/LongLive.
LONGLIVE_BASE_FILE = "models/longlive_base.pt"
LONGLIVE_LORA_FILE = "models/lora.pt"

LAYOUTS = ("original", "diffusers")

# Only what the loaders read: the repos also hold example assets and a scheduler we do not use.
_WAN_PATTERNS = (
    "config.json",
    "diffusion_pytorch_model*.safetensors*",
    WAN_T5_FILE,
    f"{WAN_TOKENIZER_DIR}/*",
    WAN_VAE_FILE,
)
_WAN_DIFFUSERS_PATTERNS = ("model_index.json", "transformer/*", "text_encoder/*", "tokenizer/*", "vae/*")


@dataclass(frozen=True)
class DownloadItem:
    """One repository to fetch, which of its files, and the local folder they land in."""

    repo_id: str
    files: tuple[str, ...]
    local_dir: Path
    exact: bool  # True: exact file names (one missing upstream is an error); False: glob patterns


def download_plan(model_dir: Path, layout: str = "original", rewards: bool = True) -> list[DownloadItem]:
    """What `download_models` fetches, in order, for `layout` ("original" or "diffusers"); with
    `rewards`, also the reward models and the processor files they need."""
    if layout not in LAYOUTS:
        raise StreamT1Error(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    model_dir = Path(model_dir)
    if layout == "original":
        wan = DownloadItem(WAN_REPO, _WAN_PATTERNS, model_dir / WAN_DIR, exact=False)
    else:
        wan = DownloadItem(WAN_DIFFUSERS_REPO, _WAN_DIFFUSERS_PATTERNS, model_dir / WAN_DIFFUSERS_DIR, exact=False)
    longlive = DownloadItem(
        LONGLIVE_REPO, (LONGLIVE_BASE_FILE, LONGLIVE_LORA_FILE), model_dir / LONGLIVE_DIR, exact=True
    )
    if not rewards:
        return [wan, longlive]
    from engine.rewards.registry import reward_download_items

    return [wan, longlive, *(DownloadItem(repo, files, model_dir / folder, exact=False)
                             for repo, files, folder in reward_download_items())]


def download_models(model_dir: Path, layout: str = "original", rewards: bool = True) -> None:
    """Fetch every item of `download_plan` (resumable: files already there are not fetched again)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    for item in download_plan(model_dir, layout, rewards):
        try:
            if item.exact:
                for name in item.files:
                    hf_hub_download(item.repo_id, name, local_dir=item.local_dir)
            else:
                snapshot_download(item.repo_id, allow_patterns=list(item.files), local_dir=item.local_dir)
        except Exception as exc:  # network, auth, disk: all end the download the same way
            reason = " ".join(str(exc).split())[:200]
            raise WeightsError(
                f"could not download {item.repo_id} into {item.local_dir} ({type(exc).__name__}: {reason}): "
                "check the network, disk space and HF_TOKEN, then run the same command again"
            ) from exc
