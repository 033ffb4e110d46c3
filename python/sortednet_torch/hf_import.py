"""Hugging Face decoder LM folder → sortednet run, in PyTorch (the TypeScript side's
src/run/hf_import.ts, with the same refusals and the same checkpoint): a GPU user imports here and
fine-tunes with `python -m sortednet_torch.train`.

    python -m sortednet_torch.hf_import --hf MODEL_DIR --out RUN_DIR [--grid '{"depth": [4, 8, 12]}']

Supported: LlamaForCausalLM (Llama 2/3, TinyLlama, SmolLM), Qwen2ForCausalLM, GPT2LMHeadModel.
Unsupported features (sliding windows, mixtures of experts, ALiBi, other RoPE scalings, ...) are
refused by name; every tensor is accounted for (unmapped, missing and misshapen ones are listed).
"""
import argparse
import json
import os
import re
import shutil
import sys

import torch

from .checkpoint import list_checkpoints, save_checkpoint
from .cli import run_command
from .hf import read_state
from .models import Transformer

ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel")
BY_TYPE = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "gpt2": "GPT2LMHeadModel"}
IGNORED = [re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$"),
           re.compile(r"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$")]


class HfImportError(ValueError):
    pass


def architecture(c, where="config.json"):
    archs = c.get("architectures") or []
    name = archs[0] if archs else BY_TYPE.get(c.get("model_type"))
    if name not in ARCHITECTURES:
        raise HfImportError(f"{where}: architecture {name or c.get('model_type')} is not supported; supported: "
                            "LlamaForCausalLM (Llama 2/3, TinyLlama, SmolLM), Qwen2ForCausalLM, GPT2LMHeadModel")
    return name


def _refuse_unsupported(c, arch, where):
    def on(k):
        return c.get(k) not in (None, False, 0)

    found = []
    if on("use_sliding_window") if arch == "Qwen2ForCausalLM" else on("sliding_window"):
        found.append("sliding-window attention (sliding_window / use_sliding_window)")
    found += [f"mixture of experts ({k})" for k in ("num_local_experts", "num_experts", "num_experts_per_tok",
                                                    "moe_intermediate_size") if on(k)]
    if on("alibi") or c.get("position_embedding_type") == "alibi":
        found.append("ALiBi positions (alibi)")
    if c.get("partial_rotary_factor", 1) != 1:
        found.append(f"partial rotary embeddings (partial_rotary_factor {c['partial_rotary_factor']})")
    if on("mlp_bias"):
        found.append("biases in the MLP (mlp_bias)")
    if on("add_cross_attention"):
        found.append("cross-attention (add_cross_attention)")
    if on("scale_attn_by_inverse_layer_idx"):
        found.append("attention scaled by the inverse layer index (scale_attn_by_inverse_layer_idx)")
    if c.get("scale_attn_weights") is False:
        found.append("unscaled attention (scale_attn_weights false)")
    if on("qk_layernorm") or on("use_qk_norm"):
        found.append("query/key norms (qk_layernorm)")
    if any(on(k) for k in ("logit_softcapping", "final_logit_softcapping", "attn_logit_softcapping")):
        found.append("logit soft-capping")
    if found:
        raise HfImportError(f"{where}: not supported: {'; '.join(found)}. sortednet imports {arch} without these; "
                            "it does not run an approximation")


def to_config(c, where="config.json"):
    """The sortednet transformer config of a Hugging Face config (as the TypeScript side's hfToTransformerConfig)."""
    arch = architecture(c, where)
    _refuse_unsupported(c, arch, where)
    if arch == "GPT2LMHeadModel":
        act = c.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise HfImportError(f"{where}: activation_function '{act}' is not supported (the tanh GELU: gelu_new, gelu_pytorch_tanh)")
        if c.get("tie_word_embeddings") is False:
            raise HfImportError(f"{where}: GPT-2 with an untied head (tie_word_embeddings false) is not supported")
        dim, heads = c["n_embd"], c["n_head"]
        return {"task": "lm", "arch": "gpt", "vocab": c["vocab_size"], "dim": dim, "heads": heads,
                "headDim": dim // heads, "ffn": c.get("n_inner") or 4 * dim, "layers": c["n_layer"],
                "maxLen": c["n_positions"], "normEps": c.get("layer_norm_epsilon", 1e-5)}
    if c.get("hidden_act", "silu") != "silu":
        raise HfImportError(f"{where}: hidden_act '{c['hidden_act']}' is not supported (LLaMA's SwiGLU: silu)")
    dim, heads = c["hidden_size"], c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    if heads % kv:
        raise HfImportError(f"{where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    out = {"task": "lm", "arch": "llama", "vocab": c["vocab_size"], "dim": dim, "heads": heads,
           "headDim": c.get("head_dim") or dim // heads, "ffn": c["intermediate_size"],
           "layers": c["num_hidden_layers"], "maxLen": c["max_position_embeddings"],
           "ropeBase": c.get("rope_theta", 10000), "normEps": c.get("rms_norm_eps", 1e-6)}
    if kv != heads:
        out["kvHeads"] = kv
    s = c.get("rope_scaling")
    if s and s.get("rope_type", s.get("type")) != "default":
        if s.get("rope_type", s.get("type")) != "llama3":
            raise HfImportError(f"{where}: rope_scaling type '{s.get('rope_type', s.get('type'))}' is not supported "
                                "(supported: llama3, or none)")
        out["ropeScaling"] = {"type": "llama3", "factor": s["factor"], "lowFreqFactor": s["low_freq_factor"],
                              "highFreqFactor": s["high_freq_factor"],
                              "originalMaxPositions": s["original_max_position_embeddings"]}
    if c.get("tie_word_embeddings") is not True:
        out["tiedHead"] = False
    if arch == "Qwen2ForCausalLM":
        out["attnBias"] = "qkv"
    elif c.get("attention_bias") is True:
        out["attnBias"] = "all"
    return out


def sources(arch, layers, names):
    """{sortednet name: (hf name, transpose, (part, parts) or None)}."""
    out = {}
    if arch == "GPT2LMHeadModel":
        p = "transformer." if any(n.startswith("transformer.") for n in names) else ""
        out["tokens.weight"] = (f"{p}wte.weight", False, None)
        out["positions.weight"] = (f"{p}wpe.weight", False, None)
        for i in range(layers):
            h, b = f"{p}h.{i}", f"blocks.{i}"
            for w in ("weight", "bias"):
                out[f"{b}.ln1.{w}"] = (f"{h}.ln_1.{w}", False, None)
                out[f"{b}.ln2.{w}"] = (f"{h}.ln_2.{w}", False, None)
            for j, x in enumerate("qkv"):  # Conv1D c_attn [in, 3·out]: q | k | v along the last axis
                out[f"{b}.attn.{x}.weight"] = (f"{h}.attn.c_attn.weight", True, (j, 3))
                out[f"{b}.attn.{x}.bias"] = (f"{h}.attn.c_attn.bias", False, (j, 3))
            for ours, theirs in (("attn.o", "attn.c_proj"), ("ffn.up", "mlp.c_fc"), ("ffn.down", "mlp.c_proj")):
                out[f"{b}.{ours}.weight"] = (f"{h}.{theirs}.weight", True, None)
                out[f"{b}.{ours}.bias"] = (f"{h}.{theirs}.bias", False, None)
        for w in ("weight", "bias"):
            out[f"lnFinal.{w}"] = (f"{p}ln_f.{w}", False, None)
        return out
    out["tokens.weight"] = ("model.embed_tokens.weight", False, None)
    for i in range(layers):
        h, b = f"model.layers.{i}", f"blocks.{i}"
        out[f"{b}.ln1.weight"] = (f"{h}.input_layernorm.weight", False, None)
        out[f"{b}.ln2.weight"] = (f"{h}.post_attention_layernorm.weight", False, None)
        for x in "qkvo":
            for w in ("weight", "bias"):
                out[f"{b}.attn.{x}.{w}"] = (f"{h}.self_attn.{x}_proj.{w}", False, None)
        for x in ("gate", "up", "down"):
            out[f"{b}.ffn.{x}.weight"] = (f"{h}.mlp.{x}_proj.weight", False, None)
    out["lnFinal.weight"] = ("model.norm.weight", False, None)
    out["lmHead.weight"] = ("lm_head.weight", False, None)
    return out


def load_weights(model, state, arch, where):
    """Copies the Hugging Face tensors into `model`; unmapped, missing and misshapen tensors are listed."""
    src = sources(arch, model.config["layers"], state)
    used, missing, mismatched = set(), [], []
    params = dict(model.named_parameters())
    values = {}
    for name, p in params.items():
        hf, transpose, part = src[name]
        if hf not in state:
            if hf not in missing:
                missing.append(hf)
            continue
        used.add(hf)
        want = list(p.shape)
        expected = want[::-1] if transpose else want
        if part:
            expected = expected[:-1] + [expected[-1] * part[1]]
        t = state[hf]
        if list(t.shape) != expected:
            msg = f"{hf}: expected {expected}, found {list(t.shape)}"
            if msg not in mismatched:
                mismatched.append(msg)
            continue
        if part:
            t = t.chunk(part[1], -1)[part[0]]
        values[name] = t.t() if transpose else t
    if model.lmHead is None and "lm_head.weight" in state:
        emb = state[src["tokens.weight"][0]]
        if not torch.equal(state["lm_head.weight"], emb):
            mismatched.append("lm_head.weight: the config ties the head to the embedding (tie_word_embeddings), "
                              "but the stored head differs from it")
        used.add("lm_head.weight")
    unmapped = sorted(n for n in state if n not in used and not any(r.match(n) for r in IGNORED))
    problems = []
    if unmapped:
        problems.append(f"{len(unmapped)} tensor(s) nothing in the model maps: {', '.join(unmapped)}")
    if missing:
        problems.append(f"{len(missing)} tensor(s) the model needs are missing: {', '.join(missing)}")
    if mismatched:
        problems.append(f"shape mismatch: {', '.join(mismatched)}")
    if problems:
        raise HfImportError(f"{where}: cannot import as {arch}: {'; '.join(problems)}")
    with torch.no_grad():
        for name, t in values.items():
            params[name].copy_(t)


def check_tokenizer(text, where, vocab):
    """Refuses, by name, a tokenizer sortednet's byte-level BPE cannot represent."""
    j = json.loads(text)
    model, pre = j.get("model") or {}, j.get("pre_tokenizer")
    why = []
    if model.get("type") != "BPE":
        why.append(f"model type {model.get('type')} (only BPE)")
    if model.get("byte_fallback") is True:
        why.append("byte_fallback (SentencePiece-style BPE)")
    if j.get("normalizer") is not None:
        why.append(f"normalizer {j['normalizer'].get('type')}")
    if not pre or pre.get("type") != "ByteLevel":
        why.append(f"pre_tokenizer {pre.get('type') if pre else 'none'} (only ByteLevel with GPT-2's split pattern)")
    elif pre.get("add_prefix_space") is True:
        why.append("ByteLevel add_prefix_space")
    if why:
        raise HfImportError(f"{where}: this tokenizer cannot be carried over: {'; '.join(why)}. "
                            "sortednet's tokenizer is byte-level BPE (GPT-2 style)")
    size = len(set(model.get("vocab", {}).values()) | {a["id"] for a in j.get("added_tokens", [])})
    if size != vocab:
        raise HfImportError(f"{where}: the tokenizer has {size} tokens, the model's vocab_size is {vocab}; "
                            "sortednet needs them equal")


def load_model(hf_dir):
    """(sortednet Transformer with the folder's weights, architecture, tokenizer.json text or None)."""
    where = os.path.join(hf_dir, "config.json")
    with open(where) as f:
        c = json.load(f)
    arch = architecture(c, where)
    config = to_config(c, where)
    tok_path = os.path.join(hf_dir, "tokenizer.json")
    tok = None
    if os.path.exists(tok_path):
        with open(tok_path, encoding="utf-8") as f:
            tok = f.read()
        check_tokenizer(tok, tok_path, config["vocab"])
    model = Transformer(config).eval()
    load_weights(model, read_state(hf_dir), arch, hf_dir)
    return model, arch, tok


def import_folder(hf_dir, out, grid=None, data="sotu", seed=1):
    """Writes the run folder `out` (checkpoint format 2 at step 0 with tokenizer.json, run.json,
    import.json); returns the model."""
    if list_checkpoints(out) or os.path.exists(os.path.join(out, "checkpoint.json")):
        raise FileExistsError(f"{out} already holds a checkpoint; choose another output folder")
    model, arch, tok = load_model(hf_dir)
    if tok is None:
        raise HfImportError(f"{hf_dir} has no tokenizer.json; an LM run needs its tokenizer")
    grid = grid or {"depth": list(range(1, model.config["layers"] + 1))}
    for sub in _grid_subs(grid):
        model.validate(sub)
    existed = os.path.exists(out)
    try:
        os.makedirs(out, exist_ok=True)
        save_checkpoint(out, model, grid, 0, seed, dataset=data, preprocess={"tokenizer": "tokenizer.json"},
                        extra_files={"tokenizer.json": tok.encode("utf-8")})
        run = {"model": {"family": "transformer", "config": model.config}, "data": {"name": data}, "grid": grid,
               "train": {}}
        with open(os.path.join(out, "run.json"), "w") as f:
            f.write(json.dumps(run, indent=2) + "\n")
        with open(os.path.join(out, "import.json"), "w") as f:
            record = {"source": os.path.abspath(hf_dir), "architecture": arch,
                      "parameters": sum(p.numel() for p in model.parameters())}
            f.write(json.dumps(record, indent=2) + "\n")
    except BaseException:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return model


def _grid_subs(grid):
    subs = [{}]
    for dim, values in grid.items():
        if dim == "layers":
            continue
        subs = [{**s, dim: v} for s in subs for v in values]
    return subs


def main(argv):
    p = argparse.ArgumentParser(prog="python -m sortednet_torch.hf_import", description=__doc__.split("\n\n")[0])
    p.add_argument("--hf", required=True, help="the Hugging Face model folder")
    p.add_argument("--out", required=True, help="a new or empty folder for the run")
    p.add_argument("--grid", type=json.loads, help='JSON, e.g. {"depth": [4, 8, 12]} (default: every depth)')
    p.add_argument("--data", default="sotu", help="the corpus run.json names for later commands")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)

    def action():
        model = import_folder(a.hf, a.out, a.grid, a.data, a.seed)
        return f"imported {sum(p.numel() for p in model.parameters())} parameters → {a.out}"

    return run_command(action, (HfImportError, FileExistsError))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
