"""What the 2D per-tap VAE convs cost in precision: the bf16 streaming decode against fp32, with
cuDNN-style 3D convs vs 2D convs per time tap (whose partial sums are rounded to bf16 once more).
Real-size Wan2.1 VAE architecture, random init, 2 chunks of 96x128 px; runs on the CPU (~30 s).

    python bench/decode_precision.py
"""

from __future__ import annotations

import copy

import torch
from diffusers import AutoencoderKLWan

from engine.models.factory import cast_for_inference
from engine.models.presets import LONGLIVE
from engine.models.vae_speed import speed_up_decoder
from engine.models.vae_stream import StreamingVaeDecoder


def decode(vae: AutoencoderKLWan, chunks: list[torch.Tensor]) -> torch.Tensor:
    decoder = StreamingVaeDecoder(vae, whole_chunks=True)
    return torch.cat([decoder.decode_chunk(z) for z in chunks], dim=2)


def main() -> None:
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**LONGLIVE.vae).eval()
    chunks = [torch.randn(1, 16, 3, 12, 16) for _ in range(2)]
    reference = decode(vae, chunks)
    print(f"{'convs (bf16)':<14} {'max |err|':>10} {'mean |err|':>11}  (vs fp32; one uint8 step = {2 / 255:.4f})")
    for name, as_2d in (("3d", False), ("2d per tap", True)):
        fast = cast_for_inference(copy.deepcopy(vae), torch.bfloat16)
        speed_up_decoder(fast, compile_fn=False, convs_as_2d=as_2d)
        err = (decode(fast, chunks) - reference).abs()
        print(f"{name:<14} {err.max().item():>10.4f} {err.mean().item():>11.5f}")


if __name__ == "__main__":
    main()
