"""The GPU rewiring of the Wan VAE decoder keeps its math (exact in fp32 on the CPU)."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import AutoencoderKLWan

from engine.models.presets import TINY
from engine.models.vae_speed import speed_up_decoder
from engine.models.vae_stream import StreamingVaeDecoder


@pytest.mark.parametrize("whole_chunks, conv2d_mode", [(False, None), (True, None), (True, "stacked"),
                                                       (True, "summed"), (False, "stacked")])
def test_fused_decoder_equals_diffusers_decoder(whole_chunks: bool, conv2d_mode):
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**TINY.vae).eval()
    fast = copy.deepcopy(vae)
    speed_up_decoder(fast, compile_fn=False, conv2d_mode=conv2d_mode)
    plain = StreamingVaeDecoder(vae, whole_chunks=whole_chunks)
    fused = StreamingVaeDecoder(fast, whole_chunks=whole_chunks)
    for _ in range(3):
        z = torch.randn(1, 16, 3, 8, 8)
        torch.testing.assert_close(fused.decode_chunk(z), plain.decode_chunk(z), rtol=0, atol=1e-6 if conv2d_mode is None else 1e-5)
    # the rewiring really happened (the test would pass trivially otherwise)
    assert all(not isinstance(m, torch.nn.SiLU) for m in fast.decoder.modules())
