"""The GPU rewiring of the Wan VAE decoder keeps its math (exact in fp32 on the CPU)."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import AutoencoderKLWan

from engine.models.vae_speed import speed_up_decoder
from engine.models.vae_stream import StreamingVaeDecoder


@pytest.mark.parametrize("whole_chunks", [False, True])
@pytest.mark.parametrize("convs_as_2d", [False, True])
def test_fused_decoder_equals_diffusers_decoder(tiny_vae: AutoencoderKLWan, whole_chunks: bool, convs_as_2d: bool):
    vae = tiny_vae
    fast = copy.deepcopy(vae)
    speed_up_decoder(fast, compile_fn=False, convs_as_2d=convs_as_2d)
    plain = StreamingVaeDecoder(vae, whole_chunks=whole_chunks)
    fused = StreamingVaeDecoder(fast, whole_chunks=whole_chunks)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        z = torch.randn(1, 16, 3, 8, 8, generator=g)
        torch.testing.assert_close(
            fused.decode_chunk(z), plain.decode_chunk(z), rtol=0, atol=1e-5 if convs_as_2d else 1e-6
        )
    # the rewiring really happened (the test would pass trivially otherwise)
    assert all(not isinstance(m, torch.nn.SiLU) for m in fast.decoder.modules())
