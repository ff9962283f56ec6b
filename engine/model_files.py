"""Where every downloaded file lives under MODEL_DIR, where it comes from, and fetching it.

    MODEL_DIR/Wan2.1-T2V-1.3B/              original Wan layout   (Wan-AI/Wan2.1-T2V-1.3B)
    MODEL_DIR/Wan2.1-T2V-1.3B-Diffusers/    diffusers layout      (Wan-AI/Wan2.1-T2V-1.3B-Diffusers)
    MODEL_DIR/LongLive/models/longlive_base.pt, lora.pt           (Efficient-Large-Model/LongLive)
    MODEL_DIR/HPSv3/HPSv3.safetensors                             (MizzenAI/HPSv3)
    MODEL_DIR/Qwen2-VL-7B-Instruct/         HPSv3's processor and tokenizer (Qwen/Qwen2-VL-7B-Instruct)
    MODEL_DIR/VideoReward/                  model_config.json, checkpoint-N/ (KlingTeam/VideoReward)
    MODEL_DIR/Qwen2-VL-2B-Instruct/         VideoReward's base model files (Qwen/Qwen2-VL-2B-Instruct)

The model loaders (engine.models) and the reward loaders (engine.rewards) both take their paths
from here, so this module imports neither. The download plan is plain data so the CLI can print it
(and tests can check it) without any network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import StreamT1Error, WeightsError

# ---------------------------------------------------------------------------------------------
# Wan2.1 and LongLive

WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
WAN_DIFFUSERS_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
LONGLIVE_REPO = "Efficient-Large-Model/LongLive"

WAN_DIR = "Wan2.1-T2V-1.3B"
WAN_DIFFUSERS_DIR = "Wan2.1-T2V-1.3B-Diffusers"
LONGLIVE_DIR = "LongLive"

# Original Wan layout, relative to MODEL_DIR/Wan2.1-T2V-1.3B (the folder itself holds the
# transformer's config.json and weights).
WAN_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_TOKENIZER_DIR = "google/umt5-xxl"
WAN_VAE_FILE = "Wan2.1_VAE.pth"
# Diffusers layout, relative to MODEL_DIR/Wan2.1-T2V-1.3B-Diffusers.
DIFFUSERS_SUBFOLDERS = {
    "transformer": "transformer",
    "text_encoder": "text_encoder",
    "tokenizer": "tokenizer",
    "vae": "vae",
}
# The weights file of a diffusers model folder, and of the original transformer folder.
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# The umt5 encoder's weights file in a diffusers `text_encoder/` folder (transformers' name).
TEXT_ENCODER_WEIGHTS_NAME = "model.safetensors"
# LongLive, relative to MODEL_DIR/LongLive.
LONGLIVE_BASE_FILE = "models/longlive_base.pt"
LONGLIVE_LORA_FILE = "models/lora.pt"

LAYOUTS = ("original", "diffusers")

# ---------------------------------------------------------------------------------------------
# Reward models, relative to MODEL_DIR

HPSV3_REPO = "MizzenAI/HPSv3"
HPSV3_CHECKPOINT = Path("HPSv3") / "HPSv3.safetensors"
HPSV3_PROCESSOR_REPO = "Qwen/Qwen2-VL-7B-Instruct"
HPSV3_PROCESSOR_DIR = Path("Qwen2-VL-7B-Instruct")  # processor, tokenizer, config
VIDEOREWARD_REPO = "KlingTeam/VideoReward"
VIDEOREWARD_DIR = Path("VideoReward")
VIDEOREWARD_BASE_REPO = "Qwen/Qwen2-VL-2B-Instruct"
VIDEOREWARD_BASE_DIR = Path("Qwen2-VL-2B-Instruct")  # VideoReward's base model: a sibling of VIDEOREWARD_DIR

# The files of a Qwen2-VL processor folder the reward loaders read.
QWEN_CONFIG_FILE = "config.json"
QWEN_PREPROCESSOR_FILE = "preprocessor_config.json"
QWEN_CHAT_TEMPLATE_FILE = "chat_template.json"
# VideoReward's folder: its config, then one `checkpoint-N/` per saved step holding either the whole
# PEFT-wrapped state dict or the adapter form (+ the base model's weights), and its tokenizer.
VIDEOREWARD_CONFIG_FILE = "model_config.json"
VIDEOREWARD_STEP_GLOB = "checkpoint-*"
VIDEOREWARD_FULL_FILE = "model.pth"
VIDEOREWARD_ADAPTER_FILE = "adapter_model.safetensors"
VIDEOREWARD_NON_LORA_FILE = "non_lora_state_dict.pth"
VIDEOREWARD_TOKENIZER_DIR = "tokenizer"
VIDEOREWARD_BASE_WEIGHTS_NAME = "model.safetensors"  # the base model's weights, adapter form only

# Every top-level folder of the layout: a path inside one of them tells which MODEL_DIR it is in.
TOP_FOLDERS = (
    WAN_DIR,
    WAN_DIFFUSERS_DIR,
    LONGLIVE_DIR,
    HPSV3_CHECKPOINT.parts[0],
    str(HPSV3_PROCESSOR_DIR),
    str(VIDEOREWARD_DIR),
    str(VIDEOREWARD_BASE_DIR),
)


# ---------------------------------------------------------------------------------------------
# Paths of one model dir


def top_folder_of(path: Path) -> Path | None:
    """The top-level layout folder (e.g. MODEL_DIR/Wan2.1-T2V-1.3B) that `path` sits in, if any."""
    for parent in (path, *path.parents):
        if parent.name in TOP_FOLDERS:
            return parent
    return None


def model_dir_of(path: Path) -> Path | None:
    """The MODEL_DIR a path sits in when it follows the `streamt1 download` layout."""
    top = top_folder_of(path)
    return None if top is None else top.parent


def wan_files(model_dir: Path) -> tuple[str, dict[str, Path]]:
    """(layout, component -> file or folder) of the Wan model in `model_dir`.

    The original layout comes first (what LongLive itself reads and what `streamt1 download`
    fetches by default), else the diffusers one. The first folder that exists wins even when
    incomplete, so a half-finished download is reported instead of silently replaced by another copy.
    """
    original, diffusers = model_dir / WAN_DIR, model_dir / WAN_DIFFUSERS_DIR
    if original.is_dir():
        return "original", {
            "transformer": original,
            "text_encoder": original / WAN_T5_FILE,
            "tokenizer": original / WAN_TOKENIZER_DIR,
            "vae": original / WAN_VAE_FILE,
        }
    if diffusers.is_dir():
        return "diffusers", {component: diffusers / sub for component, sub in DIFFUSERS_SUBFOLDERS.items()}
    raise WeightsError(
        f"missing {original} (or {diffusers}): run `streamt1 download --model-dir {model_dir}` "
        f"or point --model-dir at a folder holding {WAN_DIR}"
    )


def longlive_files(model_dir: Path) -> tuple[Path, Path]:
    """(longlive_base.pt, lora.pt) in `model_dir`, whether or not they exist."""
    return model_dir / LONGLIVE_DIR / LONGLIVE_BASE_FILE, model_dir / LONGLIVE_DIR / LONGLIVE_LORA_FILE


def umt5_tokenizer_dir(text_encoder: Path) -> Path:
    """The tokenizer folder that goes with a umt5 encoder: the sibling `tokenizer/` of a diffusers
    `text_encoder/` folder, or the sibling `google/umt5-xxl/` of Wan's `.pth` file."""
    return text_encoder.parent / (DIFFUSERS_SUBFOLDERS["tokenizer"] if text_encoder.is_dir() else WAN_TOKENIZER_DIR)


def hpsv3_files(model_dir: Path) -> tuple[Path, Path]:
    """(HPSv3.safetensors, its Qwen2-VL-7B-Instruct processor folder) in `model_dir`."""
    return model_dir / HPSV3_CHECKPOINT, model_dir / HPSV3_PROCESSOR_DIR


def videoreward_dir(model_dir: Path) -> Path:
    return model_dir / VIDEOREWARD_DIR


def videoreward_base_dir(videoreward: Path) -> Path:
    """The default Qwen2-VL-2B-Instruct folder of a VideoReward folder: its sibling."""
    return videoreward.parent / VIDEOREWARD_BASE_DIR


# ---------------------------------------------------------------------------------------------
# Download plan

# Only what the loaders read: the repos also hold example assets and a scheduler we do not use.
_WAN_PATTERNS = (
    "config.json",
    "diffusion_pytorch_model*.safetensors*",
    WAN_T5_FILE,
    f"{WAN_TOKENIZER_DIR}/*",
    WAN_VAE_FILE,
)
_WAN_DIFFUSERS_PATTERNS = ("model_index.json", *(f"{sub}/*" for sub in DIFFUSERS_SUBFOLDERS.values()))
# Reward files, fetched as patterns: some are optional.
HPSV3_FILES = (HPSV3_CHECKPOINT.name,)
HPSV3_PROCESSOR_FILES = (
    QWEN_CONFIG_FILE,
    QWEN_PREPROCESSOR_FILE,
    QWEN_CHAT_TEMPLATE_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
)
VIDEOREWARD_FILES = (
    VIDEOREWARD_CONFIG_FILE,
    f"{VIDEOREWARD_STEP_GLOB}/{VIDEOREWARD_FULL_FILE}",
    f"{VIDEOREWARD_STEP_GLOB}/{VIDEOREWARD_TOKENIZER_DIR}/*",
)
VIDEOREWARD_BASE_FILES = (QWEN_CONFIG_FILE, QWEN_PREPROCESSOR_FILE, QWEN_CHAT_TEMPLATE_FILE)


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
    return [
        wan,
        longlive,
        DownloadItem(HPSV3_REPO, HPSV3_FILES, model_dir / HPSV3_CHECKPOINT.parent, exact=False),
        DownloadItem(HPSV3_PROCESSOR_REPO, HPSV3_PROCESSOR_FILES, model_dir / HPSV3_PROCESSOR_DIR, exact=False),
        DownloadItem(VIDEOREWARD_REPO, VIDEOREWARD_FILES, model_dir / VIDEOREWARD_DIR, exact=False),
        DownloadItem(VIDEOREWARD_BASE_REPO, VIDEOREWARD_BASE_FILES, model_dir / VIDEOREWARD_BASE_DIR, exact=False),
    ]


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
