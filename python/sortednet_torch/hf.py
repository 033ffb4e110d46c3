"""Hugging Face decoder LMs in pure PyTorch: the reference that sortednet's import is checked against.

`transformers` is not needed (nor installable here): the modules below follow its modelling code
line by line, with the same parameter names, so a state dict written from them is a Hugging Face
checkpoint and a Hugging Face checkpoint loads into them. The sources followed (transformers
v4.4x, `src/transformers/models/...`):

- modeling_llama.py: `LlamaRMSNorm.forward` (float32 variance, x * rsqrt(mean(x²) + eps), then
  weight *), `LlamaRotaryEmbedding` (inv_freq = 1 / theta ** (arange(0, dim, 2) / dim) in
  float32, `emb = cat((freqs, freqs))`), `rotate_half` (cat(-x2, x1)), `apply_rotary_pos_emb`
  (q * cos + rotate_half(q) * sin), `repeat_kv` (expand + reshape = repeat_interleave on the head
  axis), `LlamaAttention` (q/k/v/o_proj, bias = config.attention_bias, softmax(q kᵀ / sqrt(head_dim)
  + causal mask) v), `LlamaMLP` (down(act(gate(x)) * up(x))), `LlamaDecoderLayer` (pre-norm
  residuals: input_layernorm, post_attention_layernorm), `LlamaModel` (embed_tokens, layers, norm),
  `LlamaForCausalLM` (lm_head, tied to embed_tokens when tie_word_embeddings).
- modeling_rope_utils.py: `_compute_llama3_parameters` (rope_scaling rope_type "llama3").
- modeling_qwen2.py: `Qwen2Attention` is LlamaAttention with q/k/v_proj bias=True, o_proj
  bias=False; `use_sliding_window` is refused by the importer.
- modeling_gpt2.py + pytorch_utils.py: `Conv1D` (weight [nx, nf], y = x @ W + b: the transpose of
  nn.Linear), `GPT2Attention` (c_attn fused q|k|v split along the last axis, attn / sqrt(head_dim)
  when scale_attn_weights, causal mask, c_proj), `GPT2MLP` (c_fc, act, c_proj), `GPT2Block` (ln_1,
  attn, ln_2, mlp, pre-norm residuals), `GPT2Model` (wte + wpe, h.N, ln_f), `GPT2LMHeadModel`
  (lm_head tied to wte); activations.py `NewGELUActivation` (gelu_new: the tanh form).

`python -m sortednet_torch.hf write --kind llama-gqa|qwen2|gpt2 --out DIR` writes a tiny random
model folder (config.json, safetensors (sharded with an index for llama-gqa), tokenizer.json);
`python -m sortednet_torch.hf run DIR --ids 1,2,3 --greedy 50` prints its logits for the ids and
its greedy continuation (recomputing the whole sequence each step, no cache) as JSON (`write`
takes --ids and --greedy too, to do both in one process).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# LLaMA family (Llama 2/3, TinyLlama, SmolLM, Qwen2)


class LlamaRMSNorm(nn.Module):
    """modeling_llama.py LlamaRMSNorm: the variance in float32, the weight applied last."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def default_inv_freq(head_dim, theta):
    """modeling_rope_utils.py _compute_default_rope_parameters (float32, as Hugging Face)."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def llama3_inv_freq(inv_freq, scaling):
    """modeling_rope_utils.py _compute_llama3_parameters, verbatim in substance."""
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    # wavelen < high_freq_wavelen: do nothing; wavelen > low_freq_wavelen: divide by factor
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # otherwise: interpolate between the two, using a smooth factor
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rope_cos_sin(inv_freq, positions):
    """LlamaRotaryEmbedding.forward: freqs = positions ⊗ inv_freq in float32, emb = cat(freqs, freqs)."""
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    """modeling_llama.py rotate_half."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """modeling_llama.py apply_rotary_pos_emb (cos/sin [T, d] broadcast over batch and heads)."""
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states, n_rep):
    """modeling_llama.py repeat_kv: (batch, kv_heads, T, d) → (batch, kv_heads * n_rep, T, d)."""
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def causal_mask(T, dtype):
    return torch.triu(torch.full((T, T), torch.finfo(dtype).min), 1)


class LlamaAttention(nn.Module):
    def __init__(self, c, qkv_bias, o_bias):
        super().__init__()
        self.num_heads = c["num_attention_heads"]
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.num_heads
        self.num_key_value_heads = c.get("num_key_value_heads") or self.num_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        h = c["hidden_size"]
        self.q_proj = nn.Linear(h, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(h, self.num_key_value_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(h, self.num_key_value_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, h, bias=o_bias)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k = repeat_kv(k, self.num_key_value_groups)
        v = repeat_kv(v, self.num_key_value_groups)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + causal_mask(T, q.dtype)
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(w, v).transpose(1, 2).reshape(B, T, -1)
        return self.o_proj(out)


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, i = c["hidden_size"], c["intermediate_size"]
        bias = bool(c.get("mlp_bias", False))
        self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c, qkv_bias, o_bias):
        super().__init__()
        eps = c.get("rms_norm_eps", 1e-6)
        self.self_attn = LlamaAttention(c, qkv_bias, o_bias)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = LlamaRMSNorm(c["hidden_size"], eps)
        self.post_attention_layernorm = LlamaRMSNorm(c["hidden_size"], eps)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c, qkv_bias, o_bias):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(LlamaDecoderLayer(c, qkv_bias, o_bias) for _ in range(c["num_hidden_layers"]))
        self.norm = LlamaRMSNorm(c["hidden_size"], c.get("rms_norm_eps", 1e-6))


class LlamaForCausalLM(nn.Module):
    """LlamaForCausalLM / Qwen2ForCausalLM (qwen2: q/k/v biases, no o_proj bias)."""

    def __init__(self, c):
        super().__init__()
        self.config = c
        qwen2 = c.get("model_type") == "qwen2"
        bias = bool(c.get("attention_bias", False))
        self.model = LlamaModel(c, qkv_bias=qwen2 or bias, o_bias=bias and not qwen2)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        if c.get("tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight
        attn = self.model.layers[0].self_attn
        inv = default_inv_freq(attn.head_dim, float(c.get("rope_theta", 10000.0)))
        scaling = c.get("rope_scaling")
        if scaling:
            inv = llama3_inv_freq(inv, scaling)
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, ids):
        T = ids.shape[1]
        cos, sin = rope_cos_sin(self.inv_freq, torch.arange(T))
        h = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin)
        return self.lm_head(self.model.norm(h))


# ---------------------------------------------------------------------------------------------
# GPT-2


class Conv1D(nn.Module):
    """pytorch_utils.py Conv1D: weight [nx, nf]; y = x @ W + b."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def gelu_new(x):
    """activations.py NewGELUActivation."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_dim = c["n_embd"]
        self.num_heads = c["n_head"]
        self.head_dim = self.embed_dim // self.num_heads
        self.split_size = self.embed_dim
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.c_attn(x).split(self.split_size, dim=2)

        def heads(t):  # GPT2Attention._split_heads
            return t.view(B, T, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

        q, k, v = heads(q), heads(k), heads(v)
        w = torch.matmul(q, k.transpose(-1, -2)) / torch.full([], v.size(-1) ** 0.5)  # scale_attn_weights
        w = torch.where(torch.ones(T, T, dtype=torch.bool).tril(), w, torch.finfo(w.dtype).min)
        w = F.softmax(w, dim=-1)
        out = torch.matmul(w, v).permute(0, 2, 1, 3).reshape(B, T, self.embed_dim)  # _merge_heads
        return self.c_proj(out)


class GPT2MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        inner = c.get("n_inner") or 4 * c["n_embd"]
        self.c_fc = Conv1D(inner, c["n_embd"])
        self.c_proj = Conv1D(c["n_embd"], inner)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("layer_norm_epsilon", 1e-5)
        self.ln_1 = nn.LayerNorm(c["n_embd"], eps=eps)
        self.attn = GPT2Attention(c)
        self.ln_2 = nn.LayerNorm(c["n_embd"], eps=eps)
        self.mlp = GPT2MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c["vocab_size"], c["n_embd"])
        self.wpe = nn.Embedding(c["n_positions"], c["n_embd"])
        self.h = nn.ModuleList(GPT2Block(c) for _ in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(c["n_embd"], eps=c.get("layer_norm_epsilon", 1e-5))


class GPT2LMHeadModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.transformer = GPT2Model(c)
        self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def forward(self, ids):
        t = self.transformer
        h = t.wte(ids) + t.wpe(torch.arange(ids.shape[1]))
        for block in t.h:
            h = block(h)
        return self.lm_head(t.ln_f(h))


def build(config):
    arch = (config.get("architectures") or ["?"])[0]
    if arch in ("LlamaForCausalLM", "Qwen2ForCausalLM"):
        return LlamaForCausalLM(config)
    if arch == "GPT2LMHeadModel":
        return GPT2LMHeadModel(config)
    raise ValueError(f"hf: architecture {arch} is not one of LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel")


# ---------------------------------------------------------------------------------------------
# Folders: safetensors (F32, F16, BF16; sharded with an index), config.json, tokenizer.json

_ST = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


def encode_safetensors(tensors, dtype="F32"):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(_ST[dtype][0]).contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if _ST[dtype][1] == 2 else t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return b"".join([struct.pack("<Q", len(text)), text] + blobs)


def decode_safetensors(data):
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        raw = data[8 + n + b : 8 + n + e]
        dt, size = _ST[h["dtype"]]
        if size == 2:
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.int16).copy()).view(dt)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.float32).copy())
        out[name] = t.reshape(h["shape"]).float()
    return out


def read_state(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    state = {}
    for f in files:
        with open(os.path.join(folder, f), "rb") as fh:
            state.update(decode_safetensors(fh.read()))
    return state


def load_folder(folder):
    """The reference model of a Hugging Face folder, in eval mode, with its weights (strictly)."""
    config = json.load(open(os.path.join(folder, "config.json")))
    model = build(config).eval()
    state = read_state(folder)
    if config.get("architectures", [""])[0] == "GPT2LMHeadModel":
        state = {k if k.startswith("transformer.") or k == "lm_head.weight" else "transformer." + k: v for k, v in state.items()}
    tied = [k for k in ("lm_head.weight",) if config.get("tie_word_embeddings", True) and k not in state]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m not in tied]
    if missing or unexpected:
        raise ValueError(f"{folder}: missing {missing}, unexpected {unexpected}")
    return model


def bytes_to_unicode():
    """GPT-2's byte → printable character map (tokenizers' ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tiny_tokenizer_json():
    """A byte-level BPE tokenizer.json: the 256 byte tokens, a few merges, <|endoftext|>."""
    chars = bytes_to_unicode()
    vocab = {chars[b]: i for i, b in enumerate(sorted(chars))}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġ", "s")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    eot = len(vocab)
    vocab["<|endoftext|>"] = eot
    level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **level},
        "post_processor": {"type": "ByteLevel", **level, "trim_offsets": False},
        "decoder": {"type": "ByteLevel", **level},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


VOCAB = 256 + 8 + 1

KINDS = {
    # Llama 3 style: grouped-query attention (4 heads share 2 key/value heads), untied head,
    # rope_theta 50000 with llama3 rope_scaling; sharded in two files. The norms' epsilons are
    # larger than real models' so that an epsilon dropped on the way shows in the logits.
    "llama-gqa": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
        "hidden_act": "silu", "max_position_embeddings": 128, "rms_norm_eps": 1e-2, "rope_theta": 50000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64},
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False, "torch_dtype": "float32",
        "bos_token_id": VOCAB - 1, "eos_token_id": VOCAB - 1,
    },
    # Qwen2: q/k/v biases, GQA, tied head; stored in bfloat16.
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": VOCAB, "hidden_size": 48,
        "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,
        "hidden_act": "silu", "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 2,
        "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "bos_token_id": VOCAB - 1, "eos_token_id": VOCAB - 1,
    },
    "gpt2": {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": VOCAB, "n_embd": 64, "n_head": 4,
        "n_layer": 3, "n_positions": 128, "n_ctx": 128, "n_inner": None, "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-3, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "tie_word_embeddings": True, "torch_dtype": "float32",
        "bos_token_id": VOCAB - 1, "eos_token_id": VOCAB - 1,
    },
}


def randomize(model, seed):
    """Weights large enough that logits are well apart (Hugging Face's 0.02 init makes them nearly
    uniform, and a greedy comparison would hinge on ties): N(0, 1/fan_in) matrices, norms near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                fan_in = p.shape[0] if isinstance(dict(model.named_modules()).get(name.rsplit(".", 1)[0]), Conv1D) else p.shape[1]
                # GPT-2's tied head: large embeddings make every token predict itself.
                scale = 1.0 if "embed" in name else 0.3 if "wte" in name or "wpe" in name else 1.5 / math.sqrt(fan_in)
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif name.endswith("weight"):  # a norm's gain
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:  # a bias
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def write_folder(out, kind, seed=0, shards=None, dtype=None):
    """A tiny random Hugging Face model folder of `kind`; returns the folder."""
    config = dict(KINDS[kind])
    model = build(config)
    randomize(model, seed)
    state = {k: v for k, v in model.state_dict().items()}
    if config.get("tie_word_embeddings"):
        state.pop("lm_head.weight")
    if kind == "gpt2":  # GPT-2's own files name the GPT2Model's parameters without the prefix
        state = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in state.items()}
    dtype = dtype or {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[config["torch_dtype"]]
    shards = shards or (2 if kind == "llama-gqa" else 1)
    os.makedirs(out, exist_ok=True)
    names = sorted(state)
    if shards == 1:
        with open(os.path.join(out, "model.safetensors"), "wb") as f:
            f.write(encode_safetensors(state, dtype))
    else:
        weight_map, total = {}, 0
        for s in range(shards):
            part = names[s::shards]
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            with open(os.path.join(out, file), "wb") as f:
                f.write(encode_safetensors({n: state[n] for n in part}, dtype))
            for n in part:
                weight_map[n] = file
                total += state[n].numel() * _ST[dtype][1]
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tiny_tokenizer_json(), f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}, f)
    return out


@torch.no_grad()
def run(folder, ids, greedy=0):
    """Logits [T, vocab] of `ids`, and `greedy` tokens decoded greedily (no cache: full recompute)."""
    model = load_folder(folder)
    x = torch.tensor([ids], dtype=torch.long)
    logits = model(x)[0]
    tokens = []
    for _ in range(greedy):
        nxt = int(model(x)[0, -1].argmax())
        tokens.append(nxt)
        x = torch.cat([x, torch.tensor([[nxt]])], 1)
    return {"logits": logits.tolist(), "greedy": tokens}


def main(argv):
    p = argparse.ArgumentParser(prog="python -m sortednet_torch.hf")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a tiny random Hugging Face model folder")
    w.add_argument("--kind", choices=sorted(KINDS), required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--shards", type=int)
    w.add_argument("--dtype", choices=sorted(_ST))
    w.add_argument("--ids", help="also print `run`'s JSON for these comma-separated token ids")
    w.add_argument("--greedy", type=int, default=0)
    r = sub.add_parser("run", help="logits and greedy decoding of a Hugging Face folder (JSON on stdout)")
    r.add_argument("folder")
    r.add_argument("--ids", required=True, help="comma-separated token ids")
    r.add_argument("--greedy", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.cmd == "write":
        folder = write_folder(a.out, a.kind, a.seed, a.shards, a.dtype)
        print(json.dumps(run(folder, [int(t) for t in a.ids.split(",")], a.greedy)) if a.ids else folder)
    else:
        print(json.dumps(run(a.folder, [int(t) for t in a.ids.split(",")], a.greedy)))


if __name__ == "__main__":
    main(sys.argv[1:])
