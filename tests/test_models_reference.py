"""`SwitchTransformer` against an independent NumPy port of Hugging Face's
`SwitchTransformersForConditionalGeneration` forward pass (float64).

The weights are exported with the documented tfmoe -> Hugging Face name mapping, so
this also checks that mapping (the checkpoint converter relies on it).
"""

import math

import numpy as np
import pytest

from tfmoe.models import SwitchSeq2SeqBackbone, SwitchTransformer

MIN = np.finfo(np.float32).min


def hf_state_dict(model):
    """tfmoe weights under Hugging Face names (PyTorch `Linear` layout `[out, in]`);
    `model`: a `SwitchSeq2SeqBackbone`."""
    sd = {"shared.weight": model.token_embedding.embeddings}
    if not model.tie_embeddings:
        sd["lm_head.weight"] = np.asarray(model.token_embedding.reverse_embeddings).T
    for s, stack in (("encoder", model.encoder), ("decoder", model.decoder)):
        sd[f"{s}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
            stack.relative_position_bias.embeddings
        )
        sd[f"{s}.final_layer_norm.weight"] = stack.final_layer_norm.scale
        for i, block in enumerate(stack.blocks):
            p = f"{s}.block.{i}.layer"
            sd[f"{p}.0.layer_norm.weight"] = block.self_attention_layer_norm.scale
            for w in "qkvo":
                sd[f"{p}.0.SelfAttention.{w}.weight"] = np.asarray(
                    getattr(block.self_attention, w)
                ).T
            f = 1
            if s == "decoder":
                sd[f"{p}.1.layer_norm.weight"] = block.cross_attention_layer_norm.scale
                for w in "qkvo":
                    sd[f"{p}.1.EncDecAttention.{w}.weight"] = np.asarray(
                        getattr(block.cross_attention, w)
                    ).T
                f = 2
            sd[f"{p}.{f}.layer_norm.weight"] = block.feed_forward_layer_norm.scale
            ff = block.feed_forward
            if block.is_sparse:
                sd[f"{p}.{f}.mlp.router.classifier.weight"] = np.asarray(ff.router.kernel).T
                for j in range(ff.num_experts):  # tfmoe: wi [E, out, in], wo [E, in, out]
                    sd[f"{p}.{f}.mlp.experts.expert_{j}.wi.weight"] = np.asarray(ff.experts.wi)[j]
                    sd[f"{p}.{f}.mlp.experts.expert_{j}.wo.weight"] = np.asarray(ff.experts.wo)[j].T
            else:
                for w in ("wi", "wo"):
                    sd[f"{p}.{f}.mlp.{w}.weight"] = np.asarray(getattr(ff, w)).T
    return {k: np.asarray(v, np.float64) for k, v in sd.items()}


def _bucket(rel, bidirectional, num_buckets=32, max_distance=128):
    out = np.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        out += (rel > 0) * num_buckets
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore", invalid="ignore"):
        large = max_exact + (
            np.log(rel.astype(np.float32) / max_exact)
            / np.float32(math.log(max_distance / max_exact))
            * (num_buckets - max_exact)
        ).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return out + np.where(rel < max_exact, rel, large)


def _norm(x, w):
    return w * (x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-6))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _attention(x, kv, sd, p, heads, d_kv, bias):
    b = x.shape[0]
    split = lambda t: t.reshape(b, -1, heads, d_kv).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = (split(t @ sd[f"{p}.{w}.weight"].T) for t, w in ((x, "q"), (kv, "k"), (kv, "v")))
    weights = _softmax(q @ k.transpose(0, 1, 3, 2) + bias)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(b, -1, heads * d_kv)
    return out @ sd[f"{p}.o.weight"].T


def _mlp(x, sd, p, sparse):
    if not sparse:
        return np.maximum(x @ sd[f"{p}.wi.weight"].T, 0) @ sd[f"{p}.wo.weight"].T
    probs = _softmax(x @ sd[f"{p}.router.classifier.weight"].T)
    index, gate = probs.argmax(-1), probs.max(-1, keepdims=True)
    out = np.zeros_like(x)
    for j in np.unique(index):
        sel = index == j
        e = f"{p}.experts.expert_{j}"
        out[sel] = np.maximum(x[sel] @ sd[f"{e}.wi.weight"].T, 0) @ sd[f"{e}.wo.weight"].T
    return gate * out


def _stack(sd, s, x, mask, heads, d_kv, sparse_layers, num_layers, enc=None, enc_mask=None):
    q_len = x.shape[1]
    rel = np.arange(q_len)[None, :] - np.arange(q_len)[:, None]
    table = sd[f"{s}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    bias = table[_bucket(rel, s == "encoder")].transpose(2, 0, 1)[None]
    if s == "encoder":
        bias = bias + (1.0 - mask[:, None, None, :]) * MIN
    else:
        allowed = np.tril(np.ones((q_len, q_len)))[None, None] * mask[:, None, None, :]
        bias = bias + np.where(allowed > 0, 0.0, MIN)
        cross_bias = (1.0 - enc_mask[:, None, None, :]) * MIN
    for i in range(num_layers):
        p = f"{s}.block.{i}.layer"
        h = _norm(x, sd[f"{p}.0.layer_norm.weight"])
        x = x + _attention(h, h, sd, f"{p}.0.SelfAttention", heads, d_kv, bias)
        f = 1
        if s == "decoder":
            x = x + _attention(
                _norm(x, sd[f"{p}.1.layer_norm.weight"]),
                enc,
                sd,
                f"{p}.1.EncDecAttention",
                heads,
                d_kv,
                cross_bias,
            )
            f = 2
        x = x + _mlp(
            _norm(x, sd[f"{p}.{f}.layer_norm.weight"]), sd, f"{p}.{f}.mlp", i in sparse_layers
        )
    return _norm(x, sd[f"{s}.final_layer_norm.weight"])


def hf_logits(model, inputs):
    """Logits of the NumPy port; `model`: a `SwitchSeq2SeqBackbone`."""
    sd = hf_state_dict(model)
    embed = sd["shared.weight"]
    args = (model.num_heads, model.key_value_dim)
    enc_mask = inputs["encoder_padding_mask"].astype(np.float64)
    enc = _stack(
        sd,
        "encoder",
        embed[inputs["encoder_token_ids"]],
        enc_mask,
        *args,
        model.encoder.sparse_layers,
        model.num_layers,
    )
    dec = _stack(
        sd,
        "decoder",
        embed[inputs["decoder_token_ids"]],
        inputs["decoder_padding_mask"].astype(np.float64),
        *args,
        model.decoder.sparse_layers,
        model.num_decoder_layers,
        enc,
        enc_mask,
    )
    if model.tie_embeddings:
        return (dec * model.hidden_dim**-0.5) @ embed.T
    return dec @ sd["lm_head.weight"].T


@pytest.mark.parametrize(
    "experts,tie,ignore_padding", [(0, True, True), (4, False, False), (4, True, True)]
)
def test_logits_match_numpy_port_of_hugging_face(experts, tie, ignore_padding):
    model = SwitchTransformer(
        SwitchSeq2SeqBackbone(
            vocabulary_size=61,
            hidden_dim=24,
            num_heads=3,
            key_value_dim=5,
            intermediate_dim=20,
            num_layers=3,
            num_decoder_layers=2,
            num_experts=experts,
            sparse_step=2,
            tie_embeddings=tie,
            dropout=0.1,
            eval_capacity_factor=64.0,
            router_ignore_padding_tokens=ignore_padding,
        )
    )
    rng = np.random.default_rng(3)
    # Long enough (150 > max_distance 128) to exercise every position bucket.
    decoder_lengths = np.array([[140], [120]])
    inputs = {
        "encoder_token_ids": rng.integers(0, 61, (2, 150)),
        "encoder_padding_mask": np.arange(150)[None] < np.array([[150], [97]]),
        "decoder_token_ids": rng.integers(0, 61, (2, 140)),
        "decoder_padding_mask": np.arange(140)[None] < decoder_lengths,
    }
    got = np.asarray(model(inputs))
    want = hf_logits(model.backbone, inputs)
    assert model.backbone.decoder.sparse_layers == ([1] if experts else [])
    if ignore_padding and experts:
        # Hugging Face routes padding tokens: only padded positions may differ.
        real = inputs["decoder_padding_mask"]
        got, want = got[real], want[real]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
