"""Streaming VAE decode speed at 480x832 (random-init Wan2.1 VAE, bf16) under backend settings,
plus a CUDA profile of one chunk: which kernels the per-chunk decode spends its time in.

    python bench/decode_bench.py [--profile]
"""

from __future__ import annotations

import argparse
import time

import torch

from engine.models.factory import cast_for_inference
from engine.models.presets import LONGLIVE
from engine.models.vae_speed import speed_up_decoder
from engine.models.vae_stream import StreamingVaeDecoder
from diffusers import AutoencoderKLWan


def set_conv_format(vae: AutoencoderKLWan, fmt: torch.memory_format) -> None:
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.to(memory_format=fmt)


def time_decode(decoder: StreamingVaeDecoder, latents: list[torch.Tensor]) -> float:
    decoder.reset(1)
    decoder.decode_chunk(latents[0])
    torch.cuda.synchronize()
    start = time.perf_counter()
    for z in latents[1:]:
        decoder.decode_chunk(z)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / (len(latents) - 1) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda")
    with torch.device(device):
        vae = cast_for_inference(AutoencoderKLWan(**LONGLIVE.vae), torch.bfloat16)
    decoder = StreamingVaeDecoder(vae)
    shape = (1, 16, 3, LONGLIVE.latent_height, LONGLIVE.latent_width)
    latents = [torch.randn(shape, device=device) for _ in range(6)]
    print(f"{'setting':<34} {'ms/chunk':>9}")
    for whole_chunks in (False, True):
        decoder.whole_chunks = whole_chunks
        for fmt in ("contiguous", "channels_last_3d"):
            set_conv_format(vae, torch.channels_last_3d if fmt != "contiguous" else torch.contiguous_format)
            time_decode(decoder, latents)  # warm-up
            ms = time_decode(decoder, latents)
            mode = "whole chunk" if whole_chunks else "frame by frame"
            print(f"{mode:<15} {fmt:<18} {ms:>9.1f}")
    speed_up_decoder(vae)
    time_decode(decoder, latents)  # warm-up (compiles the fused norm)
    print(f"{'whole chunk':<15} {'channels_last_3d':<18} {time_decode(decoder, latents):>9.1f}  + fused norm/SiLU, in-conv padding")
    if args.profile:
        set_conv_format(vae, torch.contiguous_format)
        decoder.reset(1)
        decoder.decode_chunk(latents[0])
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            decoder.decode_chunk(latents[1])
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    main()
