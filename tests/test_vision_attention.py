"""Qwen2-VL's vision tower with our windowed attention against transformers' own SDPA path, on a
tiny random tower: equal windows (one batched call) and unequal ones (one call per window)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import Qwen2VLConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

from engine.rewards.vision_attention import NAME, batch_vision_attention


def tiny_tower() -> Qwen2VisionTransformerPretrainedModel:
    config = Qwen2VLConfig(
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        }
    ).vision_config
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen2VisionTransformerPretrainedModel(config).eval()


@pytest.mark.parametrize("grids", [[[1, 4, 6]] * 3, [[2, 4, 4], [1, 4, 6]]], ids=["equal", "unequal"])
def test_windowed_attention_equals_transformers_sdpa(grids):
    tower = tiny_tower()
    ours = copy.deepcopy(tower)
    batch_vision_attention(ours)
    assert ours.config._attn_implementation == NAME and tower.config._attn_implementation == "sdpa"
    grid = torch.tensor(grids)
    patches = int(grid.prod(dim=1).sum())
    pixels = torch.randn(patches, 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = tower(pixels, grid_thw=grid).pooler_output
        got = ours(pixels, grid_thw=grid).pooler_output
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(got[: len(got) // 2], got[len(got) // 2 :])  # images differ: no mixing hides
