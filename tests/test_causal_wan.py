"""The cached chunk forward against diffusers' own forward (empty cache) and against one full
block-causal forward with the equivalent sink + rolling-window mask (long enough to roll)."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor, WanTimeTextImageEmbedding

from engine.config import StreamConfig
from engine.models.causal_wan import CausalWanTransformer, timestep_sinusoid
from engine.models.kv_cache import KVCache
from engine.models.presets import TINY

LATENT_H = LATENT_W = 8
TOKENS_PER_FRAME = (LATENT_H // 2) * (LATENT_W // 2)


def tiny_wan(seed: int = 0) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    return WanTransformer3DModel(**TINY.transformer).eval()


class MaskedSelfAttention(WanAttnProcessor):
    """diffusers' processor with a fixed boolean attention mask (test-only reference)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask = mask

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        return super().__call__(attn, hidden_states, encoder_hidden_states, self.mask, rotary_emb)


def block_causal_mask(num_frames: int, cfg: StreamConfig) -> torch.Tensor:
    """Token mask: a chunk sees itself, the sink chunks and the `window_chunks` chunks before it."""
    chunk = torch.arange(num_frames * TOKENS_PER_FRAME) // TOKENS_PER_FRAME // cfg.chunk_frames
    q, k = chunk[:, None], chunk[None, :]
    visible_past = (k < q) & ((k < cfg.sink_chunks) | (k >= q - cfg.window_chunks))
    return (k == q) | visible_past


def full_reference(wan, latents, timesteps_per_frame, text, cfg):
    """diffusers' full forward over all frames with per-token timesteps and the block-causal mask."""
    frames = latents.shape[2]
    mask = block_causal_mask(frames, cfg)
    saved = [b.attn1.processor for b in wan.blocks]
    for b in wan.blocks:
        b.attn1.set_processor(MaskedSelfAttention(mask))
    try:
        t = timesteps_per_frame.repeat_interleave(TOKENS_PER_FRAME)[None].expand(latents.shape[0], -1)
        with torch.no_grad():
            return wan(latents, t, text).sample
    finally:
        for b, p in zip(wan.blocks, saved):
            b.attn1.set_processor(p)


def test_first_chunk_equals_diffusers_forward():
    wan = tiny_wan()
    x = torch.randn(2, 16, 3, LATENT_H, LATENT_W)
    t = torch.tensor([937.5, 500.0])
    text = torch.randn(1, TINY.text_len, TINY.transformer["text_dim"])
    with torch.no_grad():
        expected = wan(x, t, text.expand(2, -1, -1)).sample
    model = CausalWanTransformer(wan)
    out, _ = model.forward_chunk(x, t, 0, model.text_context(text), None)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    # the wrapped model still runs diffusers' own bidirectional forward unchanged
    with torch.no_grad():
        torch.testing.assert_close(wan(x, t, text.expand(2, -1, -1)).sample, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "cfg",
    [StreamConfig(), StreamConfig(chunk_frames=2, sink_frames=2, local_window_frames=8)],
    ids=["longlive-3-3-12", "chunk2-sink2-window8"],
)
def test_streaming_equals_full_block_causal_forward(cfg: StreamConfig):
    torch.manual_seed(1)
    wan = tiny_wan()
    model = CausalWanTransformer(wan)
    num_chunks = cfg.sink_chunks + cfg.window_chunks + 1 + 3  # the window rolls 3 times
    c = cfg.chunk_frames
    clean = torch.randn(1, 16, num_chunks * c, LATENT_H, LATENT_W)
    noisy = torch.randn(1, 16, num_chunks * c, LATENT_H, LATENT_W)
    text = torch.randn(1, TINY.text_len, TINY.transformer["text_dim"])
    text_ctx = model.text_context(text)
    grid = model.grid(LATENT_H, LATENT_W)

    cache, evictions = KVCache(), 0
    for k in range(num_chunks):
        sl = slice(k * c, (k + 1) * c)
        t = 1000.0 * (0.3 + 0.1 * (k % 5))
        prefix = model.build_prefix(cache, *grid)
        flow, _ = model.forward_chunk(noisy[:, :, sl], torch.tensor([t]), k * c, text_ctx, prefix)
        write_flow, segment = model.forward_chunk(
            clean[:, :, sl], torch.tensor([0.0]), k * c, text_ctx, prefix, capture_kv=True
        )
        cache, evicted = cache.push(segment, cfg)
        evictions += len(evicted)

        # reference: clean past + this chunk noisy, all frames in one masked forward
        inputs = torch.cat((clean[:, :, : k * c], noisy[:, :, sl]), dim=2)
        t_frames = torch.cat((torch.zeros(k * c), torch.full((c,), t)))
        expected = full_reference(wan, inputs, t_frames, text, cfg)[:, :, k * c :]
        torch.testing.assert_close(flow, expected, rtol=1e-5, atol=1e-5)
        expected_write = full_reference(wan, clean[:, :, : (k + 1) * c], torch.zeros((k + 1) * c), text, cfg)
        torch.testing.assert_close(write_flow, expected_write[:, :, k * c :], rtol=1e-5, atol=1e-5)
        assert cache.num_frames <= cfg.local_window_frames - c
    assert evictions == num_chunks - cfg.sink_chunks - cfg.window_chunks  # every push past a full window evicts one


def test_compiled_blocks_build_one_graph_per_kind_of_forward():
    """Every layer of a forward shares one compiled block graph, with or without the K/V capture of
    the cache write (a per-layer guard would compile num_layers graphs and hit dynamo's limit,
    which silently falls back to eager: what the H100 benchmark once showed)."""
    import torch._dynamo

    model = CausalWanTransformer(WanTransformer3DModel(**{**TINY.transformer, "num_layers": 4}).eval())
    for block in model.wan.blocks:
        block.compile(backend="eager", dynamic=False)
    text = model.text_context(torch.randn(1, 16, TINY.transformer["text_dim"]))
    x = torch.randn(1, TINY.transformer["in_channels"], 3, LATENT_H, LATENT_W)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    _, segment = model.forward_chunk(x, torch.tensor([0.0]), 0, text, None, capture_kv=True)
    model.forward_chunk(x, torch.tensor([500.0]), 0, text, None)
    assert segment.num_layers == 4
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2


def wan_sinusoid_reference(t: float, dim: int) -> list[float]:
    """Wan's `sinusoidal_embedding_1d` for one timestep, element by element in Python floats (float64)."""
    half = dim // 2
    angles = [t * 10000.0 ** (-j / half) for j in range(half)]
    return [math.cos(a) for a in angles] + [math.sin(a) for a in angles]


@pytest.mark.parametrize("freq_dim", [TINY.transformer["freq_dim"], 256], ids=["tiny", "wan2.1"])
def test_timestep_sinusoid_is_wans_float64_formula(freq_dim: int):
    t = torch.tensor([1000.0, 937.5, 250.0, 0.0])
    ours = timestep_sinusoid(t, freq_dim)
    expected = torch.tensor([wan_sinusoid_reference(float(x), freq_dim) for x in t], dtype=torch.float64)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
    # diffusers' Timesteps as Wan's embedder configures it: the same layout, but computed in float32,
    # which is what moved fp32 flow predictions at t = 1000
    embedder = WanTimeTextImageEmbedding(dim=8, time_freq_dim=freq_dim, time_proj_dim=48, text_embed_dim=8)
    diffusers_fp32 = embedder.timesteps_proj(t).double()
    torch.testing.assert_close(diffusers_fp32, expected, rtol=0, atol=1e-3)
    assert (diffusers_fp32 - expected).abs().max() > 1e-6
