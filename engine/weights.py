"""Reading weight files and loading them strictly, every failure as a one-line `WeightsError`.

Shared by the model loaders (engine.models) and the reward loaders (engine.rewards). A 10 GB
download that half-arrived must not surface as a traceback deep inside torch: each error names the
file and the fix (usually the `streamt1 download` command for the MODEL_DIR the file sits in).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from engine.errors import WeightsError
from engine.model_files import model_dir_of, top_folder_of

M = TypeVar("M", bound=torch.nn.Module)


# ---------------------------------------------------------------------------------------------
# One-line errors


def download_fix(path: Path) -> str:
    """What to run to get `path`: `streamt1 download` for its MODEL_DIR (DIR when unknown)."""
    model_dir = model_dir_of(path)
    return f"run `streamt1 download --model-dir {model_dir if model_dir else 'DIR'}`"


def missing_error(path: Path) -> WeightsError:
    top = top_folder_of(path)
    where = f" or point --model-dir at a folder holding {top.name}" if top is not None else ""
    return WeightsError(f"missing {path}: {download_fix(path)}{where}")


def corrupt_error(path: Path, exc: BaseException) -> WeightsError:
    reason = " ".join(f"{type(exc).__name__}: {exc}".split()).split(". ")[0][:160]
    return WeightsError(
        f"cannot read {path} ({reason}): the file is truncated or corrupt; delete it and {download_fix(path)}"
    )


def foreign_error(path: Path, what: str, detail: str) -> WeightsError:
    """`path` exists and reads, but is not `what` (`detail` says why)."""
    return WeightsError(f"{path} does not hold {what} ({detail}): point at the right file or {download_fix(path)}")


def first_few(names: list[str], n: int = 3) -> str:
    """The first `n` names, comma-separated, and how many more there are."""
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


# ---------------------------------------------------------------------------------------------
# Reading files


def require(path: Path) -> Path:
    """`path`, or a one-line WeightsError naming it and the download that provides it."""
    if not path.exists():
        raise missing_error(path)
    return path


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(require(path).read_text())
    except (OSError, ValueError) as exc:
        raise corrupt_error(path, exc) from exc


def read_safetensors(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, read tensor by tensor straight onto `device` (a GPU load never
    holds the whole file in host memory)."""
    try:
        return load_file(require(path), device=str(device))
    except Exception as exc:  # safetensors raises its own error type for bad headers
        raise corrupt_error(path, exc) from exc


def read_weights(folder: Path, name: str, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], Path]:
    """A single `name` file or its sharded `name.index.json` form, onto `device`; returns the file to blame."""
    single, index = folder / name, folder / f"{name}.index.json"
    if single.exists() or not index.exists():
        return read_safetensors(single, device), single
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise corrupt_error(index, ValueError("no weight_map"))
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        state.update(read_safetensors(folder / shard, device))
    return state, index


def to_device(state: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """`state` (e.g. memory-mapped by `torch_load`) on `device`, copied one tensor at a time, so
    that host memory holds at most the file's pages, never a second copy of it."""
    return {key: tensor.to(device) for key, tensor in state.items()}


def torch_load(path: Path) -> Any:
    """torch.load without code execution, memory-mapped when the file is a zip (lazy reads)."""
    require(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # truncated zip, legacy pickle, non-tensor payload
        raise corrupt_error(path, exc) from exc


def read_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """A tokenizer folder, offline."""
    require(folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/... for broken folders
        raise corrupt_error(folder, exc) from exc


# ---------------------------------------------------------------------------------------------
# Strict loading into an empty module


def load_strict(build: Callable[[], M], state: dict[str, torch.Tensor], dtype: torch.dtype, path: Path, what: str) -> M:
    """`build()` with its parameters on the meta device, `state` checked against it (keys and
    shapes) and assigned: floating tensors in `dtype`, others as stored. Returns the module in
    eval mode without grads.

    accelerate's `init_empty_weights(include_buffers=False)` puts only the parameters on the meta
    device (no memory, no random init: the 5.7 B-parameter umt5-xxl would otherwise cost 22 GB and
    a minute). Buffers stay real, because non-persistent ones such as the RoPE tables are computed
    in __init__ and are in no file; `with torch.device("meta")` would leave those empty too.
    """
    from accelerate import init_empty_weights  # imported here: it is slow to import

    with init_empty_weights(include_buffers=False):
        model = build()
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [f"missing keys: {first_few(missing)}"] if missing else []
        parts += [f"unexpected keys: {first_few(unexpected)}"] if unexpected else []
        raise foreign_error(path, f"{what} weights", "; ".join(parts))
    wrong = [f"{k} {list(state[k].shape)} vs {list(s)}" for k, s in expected.items() if tuple(state[k].shape) != s]
    if wrong:
        raise WeightsError(
            f"{path} holds {what} weights of other sizes (file vs model: {first_few(wrong, 2)}): "
            f"it belongs to a different model; {download_fix(path)}"
        )

    def owned(tensor: torch.Tensor) -> torch.Tensor:
        """On the CPU, a fresh copy: file-backed (mmap) tensors are only 8-byte aligned, which sends
        CPU kernels down other paths (different rounding) and keeps the file's pages pinned to the
        model. Tensors read onto a GPU are already owned: cast there (no copy in their dtype)."""
        target = dtype if tensor.is_floating_point() else tensor.dtype
        if tensor.device.type == "cpu":
            return torch.empty(tensor.shape, dtype=target).copy_(tensor)
        return tensor.to(target)

    model.load_state_dict({k: owned(v) for k, v in state.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False)
