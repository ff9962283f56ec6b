"""Streaming VAE decode speed at 480x832 (random-init Wan2.1 VAE, bf16, whole-chunk decode,
channels-last, fused norm + SiLU): the causal convs run as cuDNN 3D convs vs as 2D convs per time
tap (`engine.models.vae_speed`, the default). Optionally a CUDA kernel profile of one chunk.

    python bench/decode_bench.py [--json OUT.json] [--profile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from diffusers import AutoencoderKLWan
from torch.utils.flop_counter import FlopCounterMode

from engine.models.factory import allow_compiled_variants, cast_for_inference
from engine.models.presets import LONGLIVE
from engine.models.vae_speed import speed_up_decoder
from engine.models.vae_stream import StreamingVaeDecoder


def real_size_vae() -> AutoencoderKLWan:
    torch.manual_seed(0)
    with torch.device("cuda"):
        return cast_for_inference(AutoencoderKLWan(**LONGLIVE.vae), torch.bfloat16)


def chunk_tflop(latents: list[torch.Tensor]) -> float:
    """Floating-point work of one later chunk, counted on diffusers' own decoder."""
    decoder = StreamingVaeDecoder(real_size_vae(), whole_chunks=True)
    decoder.decode_chunk(latents[0])
    with FlopCounterMode(display=False) as counter:
        decoder.decode_chunk(latents[1])
    return counter.get_total_flops() / 1e12


def fast_decoder(convs_as_2d: bool) -> StreamingVaeDecoder:
    vae = real_size_vae()
    speed_up_decoder(vae, convs_as_2d=convs_as_2d)
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.to(memory_format=torch.channels_last_3d)
    return StreamingVaeDecoder(vae, whole_chunks=True)


def time_decode(decoder: StreamingVaeDecoder, latents: list[torch.Tensor]) -> float:
    """Median ms per chunk over latents[1:] (latents[0] starts the video)."""
    decoder.reset(1)
    decoder.decode_chunk(latents[0])
    times = []
    for z in latents[1:]:
        torch.cuda.synchronize()
        start = time.perf_counter()
        decoder.decode_chunk(z)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write {mode: ms} here")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    allow_compiled_variants()  # as tune_for_cuda does: the fused norm meets many layouts
    shape = (1, 16, 3, LONGLIVE.latent_height, LONGLIVE.latent_width)
    torch.manual_seed(0)
    latents = [torch.randn(shape, device="cuda") for _ in range(8)]
    results: dict[str, float] = {}
    tflop = chunk_tflop(latents)
    print(f"{'VAE causal convs as':<24} {'ms/chunk':>9} {'TFLOP/s':>8}")
    for mode in ("3d", "2d"):
        decoder = fast_decoder(mode == "2d")
        time_decode(decoder, latents[:3])  # warm-up: compiles the fused norm, picks cuDNN kernels
        results[mode] = time_decode(decoder, latents)
        print(f"{mode:<24} {results[mode]:>9.1f} {tflop / results[mode] * 1e3:>8.0f}")
        if args.profile:
            decoder.reset(1)
            decoder.decode_chunk(latents[0])
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                decoder.decode_chunk(latents[1])
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=70))
        del decoder
        torch.cuda.empty_cache()
    print(f"2d / 3d: {results['2d'] / results['3d']:.3f} ({tflop:.1f} TFLOP a chunk, {torch.cuda.get_device_name()})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**results, "tflop_per_chunk": tflop, "gpu": torch.cuda.get_device_name()}, f)


if __name__ == "__main__":
    main()
