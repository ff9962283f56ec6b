"""`--attention`: the flash4 route (FlashAttention-4 as one custom op, shared keys folded into one
sequence) against PyTorch's SDPA, traced whole by torch.compile, through the chunk forward; and its
one-line refusal where it cannot run. FlashAttention-4 itself needs a Hopper GPU, so here a float64
softmax stands in for its kernel: these tests check our side of the call (layout, folding, graph),
bench/attention_bench.py measures the kernel against SDPA on the GPU."""

from __future__ import annotations

import math

import pytest
import torch

import engine.models.attention as attention
from engine.config import AttentionKernel, CudaOptions
from engine.errors import StreamT1Error
from engine.models.causal_wan import CausalWanTransformer
from engine.models.kv_cache import KVCache
from engine.models.presets import TINY
from tests.helpers import one_line_error


def softmax_attention_bshd(q, k, v):
    """Softmax attention on [B, S, H, D] in float64, returned as FlashAttention-4 does with
    return_lse=True: (out [B, Sq, H, D], natural-log sum of exponentials [B, H, Sq] float32)."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / math.sqrt(q.shape[-1])
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v.double())
    return out.to(q.dtype).contiguous(), scores.logsumexp(dim=-1).float()  # contiguous, as the kernel writes it


@pytest.fixture
def kernel_calls(monkeypatch):
    """Stand the float64 softmax in for FlashAttention-4's kernel; record the shapes it is handed."""
    calls = []

    def kernel(q, k, v, return_lse=False):
        assert return_lse  # the merge of a prefix and a chunk needs it
        calls.append((tuple(q.shape), tuple(k.shape)))
        return softmax_attention_bshd(q, k, v)

    monkeypatch.setattr(attention, "flash4_kernel", lambda: kernel)
    return calls


@pytest.mark.parametrize("key_batch", [3, 1], ids=["own-keys", "shared-keys"])
def test_flash4_route_matches_sdpa_and_reads_shared_keys_once(kernel_calls, key_batch):
    torch.manual_seed(0)
    q = torch.randn(3, 10, 2, 8)
    k, v = torch.randn(key_batch, 7, 2, 8), torch.randn(key_batch, 7, 2, 8)
    out = attention.attend(q, k, v, AttentionKernel.flash4)
    torch.testing.assert_close(out, attention.attend(q, k, v, AttentionKernel.sdpa), rtol=1e-5, atol=1e-6)
    # shared keys: one call with every row's queries in one sequence, the keys once
    assert kernel_calls == ([((3, 10, 2, 8), (3, 7, 2, 8))] if key_batch == 3 else [((1, 30, 2, 8), (1, 7, 2, 8))])


def test_merged_prefix_and_chunk_equal_attention_over_both(kernel_calls):
    """flash4 attends to the shared prefix (the rows' queries folded, the prefix read once) and to
    each row's own keys apart, then merges by log-sum-exp: the same as one softmax over the row's
    [prefix + own] keys, the copy SDPA gets."""
    torch.manual_seed(4)
    q = torch.randn(2, 5, 3, 8, dtype=torch.float64) * 3  # scaled: the parts' softmax masses differ widely
    prefix_k, prefix_v = torch.randn(1, 11, 3, 8, dtype=torch.float64), torch.randn(1, 11, 3, 8, dtype=torch.float64)
    k, v = torch.randn(2, 5, 3, 8, dtype=torch.float64), torch.randn(2, 5, 3, 8, dtype=torch.float64)
    out = attention.attend_after_prefix(q, prefix_k, prefix_v, k, v, AttentionKernel.flash4)
    rows = [
        softmax_attention_bshd(
            q[r : r + 1], torch.cat((prefix_k[0], k[r]))[None], torch.cat((prefix_v[0], v[r]))[None]
        )[0]
        for r in range(2)
    ]
    torch.testing.assert_close(out, torch.cat(rows), rtol=1e-5, atol=1e-6)  # the lse is float32, as the kernel's
    assert kernel_calls == [((1, 10, 3, 8), (1, 11, 3, 8)), ((2, 5, 3, 8), (2, 5, 3, 8))]
    sdpa = attention.attend_after_prefix(q, prefix_k, prefix_v, k, v, AttentionKernel.sdpa)
    torch.testing.assert_close(sdpa, torch.cat(rows), rtol=1e-12, atol=1e-12)
    assert len(kernel_calls) == 2  # SDPA concatenated the keys and never reached the kernel


def test_merge_weights_each_part_by_its_softmax_mass():
    """Hand-computed: one query, one head, scalar values; keys with scores 0 (mass e^0 = 1) in part a
    and log 3 (mass 3) in part b, so the union's softmax weighs a's output 1/4 and b's 3/4."""
    out_a, out_b = torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), 6.0)
    lse_a, lse_b = torch.zeros(1, 1, 1), torch.full((1, 1, 1), math.log(3.0))
    merged = attention.merge_attention((out_a, lse_a), (out_b, lse_b))
    assert merged.item() == pytest.approx(2.0 / 4 + 6.0 * 3 / 4)


def test_sdpa_route_is_pytorchs_sdpa_in_heads_first_layout():
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 5, 3, 4), torch.randn(1, 6, 3, 4), torch.randn(1, 6, 3, 4)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.expand(2, -1, -1, -1).transpose(1, 2), v.expand(2, -1, -1, -1).transpose(1, 2)
    ).transpose(1, 2)
    torch.testing.assert_close(attention.attend(q, k, v, AttentionKernel.sdpa), expected, rtol=0, atol=0)


def test_flash4_op_traces_as_one_graph(kernel_calls):
    """Compiled blocks must not break their graph at the kernel: the custom op is one opaque node."""
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 6, 2, 8), torch.randn(2, 9, 2, 8), torch.randn(2, 9, 2, 8)

    def block(q, k, v):
        own = attention.attend(q * 2, k, v, AttentionKernel.flash4)
        return attention.attend_after_prefix(own, k[:1], v[:1], k, v, AttentionKernel.flash4).relu()

    explained = torch._dynamo.explain(block)(q, k, v)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), block(q, k, v), rtol=0, atol=0)


def test_chunk_forward_on_flash4_matches_sdpa(kernel_calls):
    """Self-attention over [prefix + chunk] and cross-attention over the shared prompt, both routed."""
    torch.manual_seed(3)
    from diffusers import WanTransformer3DModel

    model = CausalWanTransformer(WanTransformer3DModel(**TINY.transformer).eval())
    text = model.text_context(torch.randn(1, TINY.text_len, TINY.transformer["text_dim"]))
    first = torch.randn(1, 16, 3, 8, 8)
    _, segment = model.forward_chunk(first, torch.tensor([0.0]), 0, text, None, capture_kv=True)
    prefix = model.build_prefix(KVCache((segment,)), *model.grid(8, 8))
    x, t = torch.randn(2, 16, 3, 8, 8), torch.tensor([1000.0, 750.0])
    expected, _ = model.forward_chunk(x, t, 3, text, prefix)
    assert model.attention is AttentionKernel.sdpa and not kernel_calls
    model.use_attention(AttentionKernel.flash4)
    out, _ = model.forward_chunk(x, t, 3, text, prefix)
    assert model.attention is AttentionKernel.flash4
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    cfg = TINY.transformer
    assert len(kernel_calls) == 3 * cfg["num_layers"]  # every layer's self- (prefix, chunk) and cross-attention
    tokens, heads = 3 * 4 * 4, (cfg["num_attention_heads"], cfg["attention_head_dim"])
    assert kernel_calls[0] == ((1, 2 * tokens, *heads), (1, tokens, *heads))  # the shared prefix, folded
    assert kernel_calls[1] == ((2, tokens, *heads), (2, tokens, *heads))  # each row's own chunk
    assert kernel_calls[2] == ((1, 2 * tokens, *heads), (1, TINY.text_len, *heads))  # the prompt, folded


def test_flash4_is_refused_in_one_line_where_it_cannot_run():
    attention.check_attention(AttentionKernel.sdpa, torch.device("cpu"), torch.float32)
    with pytest.raises(StreamT1Error, match="--attention flash4 needs a CUDA GPU of compute capability 9.0") as err:
        attention.check_attention(AttentionKernel.flash4, torch.device("cpu"), torch.bfloat16)
    assert "\n" not in str(err.value)


def test_new_with_flash4_on_the_cpu_fails_in_one_line_and_leaves_nothing(tmp_path):
    s = tmp_path / "flash4"
    line = one_line_error(
        "new", "x", "--session", str(s), "--chunks", "1", "--quiet", "--device", "cpu", "--attention", "flash4"
    )
    assert "--attention flash4 needs a CUDA GPU" in line
    assert not s.exists()


@pytest.mark.parametrize(
    "flag,says", [(("--attention", "flash4"), "--attention flash4 needs a CUDA GPU"), (("--fp8",), "--fp8 needs")]
)
def test_batch_refuses_flash4_and_fp8_off_the_gpu_before_making_sessions(tmp_path, flag, says):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox\n")
    root = tmp_path / "root"
    line = one_line_error("batch", str(prompts), "--root", str(root), "--chunks", "1", "--device", "cpu", *flag)
    assert says in line
    assert not any(root.glob("*/HEAD"))


def test_the_session_records_fp8_and_flash4_in_its_compute():
    from sessions.runner import compute_of

    cuda, bf16 = torch.device("cuda"), torch.bfloat16
    assert compute_of(cuda, bf16).dtype == "bfloat16"
    assert compute_of(cuda, bf16, CudaOptions(attention=AttentionKernel.flash4)).dtype == "bfloat16+flash4"
    assert (
        compute_of(cuda, bf16, CudaOptions(fp8=True, attention=AttentionKernel.flash4)).dtype == "bfloat16+fp8+flash4"
    )
