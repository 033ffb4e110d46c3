"""sortednet LM → Hugging Face model folder (config.json, model.safetensors, tokenizer.json,
generation_config.json) in `transformers`' naming: LlamaForCausalLM (or Qwen2ForCausalLM for q/k/v
biases) for LLaMA-style runs, GPT2LMHeadModel for GPT-style ones. The names and layouts are those
the importer reads (hf_import.sources, inverted), so `sortednet import --hf` and
`python -m sortednet_torch.hf_import` give the model back, and hf.py's reference modules (which
follow the Hugging Face modelling code) load the folder as `transformers` would.

    python -m sortednet_torch.hf_export --run RUN --out DIR              # a trained sortednet LM
    python -m sortednet_torch.hf_export --new MODEL.json --tokenizer tokenizer.json --out DIR [--seed N]

`--new` writes a freshly initialised model of a sortednet transformer config (the `config` of a
model spec; `vocab` must equal the tokenizer's size): a starting point for
`python -m sortednet_torch.train --init-from DIR`, as `from_config` is in `transformers`.
"""
import argparse
import json
import os
import shutil
import sys

import torch

from .bpe import END_OF_TEXT, BpeTokenizer
from .checkpoint import load_checkpoint
from .cli import run_command
from .hf import encode_safetensors
from .hf_import import sources
from .models import Transformer


class HfExportError(ValueError):
    pass


def _uniform(c, key):
    v = c[key]
    if isinstance(v, list):
        if len(set(v)) != 1:
            raise HfExportError(f"transformer: per-block {key} {v} has no Hugging Face config field (one value for every layer); "
                                "extract a uniform sub-model first")
        return v[0]
    return v


def hf_config(c, eot=None):
    """The Hugging Face config.json of a sortednet transformer config; refuses what has no HF equivalent."""
    if c.get("task") != "lm":
        raise HfExportError(f"transformer: task '{c.get('task')}' is not a language model; only LMs export to Hugging Face")
    heads, ffn = _uniform(c, "heads"), _uniform(c, "ffn")
    extra = {"bos_token_id": eot, "eos_token_id": eot} if eot is not None else {}
    if c.get("arch", "gpt") == "gpt":
        if c["headDim"] * heads != c["dim"]:
            raise HfExportError(f"transformer: GPT-2 needs heads × headDim = dim, got {heads} × {c['headDim']} ≠ {c['dim']}")
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c["vocab"], "n_embd": c["dim"],
                "n_head": heads, "n_layer": c["layers"], "n_positions": c["maxLen"], "n_ctx": c["maxLen"], "n_inner": ffn,
                "activation_function": "gelu_new", "layer_norm_epsilon": c.get("normEps", 1e-5),
                "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
                "tie_word_embeddings": True, "torch_dtype": "float32", **extra}
    kv = _uniform(c, "kvHeads") if "kvHeads" in c else heads
    bias = c.get("attnBias", "none")
    out = {"architectures": ["Qwen2ForCausalLM" if bias == "qkv" else "LlamaForCausalLM"],
           "model_type": "qwen2" if bias == "qkv" else "llama", "vocab_size": c["vocab"], "hidden_size": c["dim"],
           "intermediate_size": ffn, "num_hidden_layers": c["layers"], "num_attention_heads": heads,
           "num_key_value_heads": kv, "head_dim": c["headDim"], "hidden_act": "silu",
           "max_position_embeddings": c["maxLen"], "rms_norm_eps": c.get("normEps", 1e-6),
           "rope_theta": c.get("ropeBase", 10000), "attention_bias": bias == "all", "mlp_bias": False,
           "tie_word_embeddings": c.get("tiedHead", True) is not False, "torch_dtype": "float32", **extra}
    if bias == "qkv":
        out.pop("attention_bias")
        out["use_sliding_window"] = False
    s = c.get("ropeScaling")
    if s:
        out["rope_scaling"] = {"rope_type": "llama3", "factor": s["factor"], "low_freq_factor": s["lowFreqFactor"],
                               "high_freq_factor": s["highFreqFactor"],
                               "original_max_position_embeddings": s["originalMaxPositions"]}
    return out


def hf_state(model, arch):
    """{Hugging Face name: tensor}: hf_import.sources inverted (transposes undone, q|k|v fused again)."""
    params = dict(model.named_parameters())
    parts = {}
    for name, (hf, transpose, part) in sources(arch, model.config["layers"], {}).items():
        if name not in params:
            continue
        t = params[name].detach().cpu().float()
        t = t.t() if transpose else t
        if part:
            parts.setdefault(hf, [None] * part[1])[part[0]] = t
        else:
            parts[hf] = t
    state = {hf: torch.cat(v, -1) if isinstance(v, list) else v for hf, v in parts.items()}
    if model.lmHead is None:
        state.pop("lm_head.weight", None)  # tied: transformers reads the embedding
    return state


def write_folder(model, out, tokenizer_json):
    """Writes `model` (a sortednet Transformer LM) as a Hugging Face folder in `out` (new or empty)."""
    tok = BpeTokenizer(tokenizer_json, "tokenizer.json")
    if tok.vocab_size != model.config["vocab"]:
        raise HfExportError(f"the tokenizer has {tok.vocab_size} tokens, the model's vocab is {model.config['vocab']}; "
                            "a Hugging Face folder needs them equal")
    config = hf_config(model.config, tok.specials.get(END_OF_TEXT))
    if os.path.isdir(out) and os.listdir(out):
        raise FileExistsError(f"{out} is not empty; choose a new folder")
    state = hf_state(model, config["architectures"][0])
    tmp = f"{out.rstrip(os.sep)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:  # written beside, then renamed: a folder is complete or absent
        files = {"model.safetensors": encode_safetensors(state, "F32"),
                 "config.json": (json.dumps(config, indent=2) + "\n").encode(),
                 "tokenizer.json": tokenizer_json.encode("utf-8")}
        eot = tok.specials.get(END_OF_TEXT)
        if eot is not None:
            files["generation_config.json"] = json.dumps({"bos_token_id": eot, "eos_token_id": eot}).encode()
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return config


def main(argv):
    p = argparse.ArgumentParser(prog="python -m sortednet_torch.hf_export", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a sortednet LM run folder (its latest checkpoint and tokenizer)")
    src.add_argument("--new", help="a sortednet transformer config (JSON): a freshly initialised model")
    p.add_argument("--tokenizer", help="tokenizer.json for --new")
    p.add_argument("--seed", type=int, default=1, help="initialisation seed for --new (default 1)")
    p.add_argument("--out", required=True, help="a new or empty folder")
    a = p.parse_args(argv)

    def action():
        if a.run:
            ck = load_checkpoint(a.run, skip_optimizer=True)
            if ck.meta["model"]["family"] != "transformer" or "tokenizer.json" not in ck.extra_files:
                raise HfExportError(f"{a.run} is not a language-model run with a tokenizer.json; only LMs export to Hugging Face")
            model, tok = ck.model, ck.extra_files["tokenizer.json"].decode("utf-8")
        else:
            if not a.tokenizer:
                raise HfExportError("--new needs --tokenizer tokenizer.json (the model's vocabulary)")
            with open(a.new, encoding="utf-8") as f:
                config = json.load(f)
            config = config.get("config", config)  # a model spec {family, config} or the config alone
            with open(a.tokenizer, encoding="utf-8") as f:
                tok = f.read()
            torch.manual_seed(a.seed)
            model = Transformer(config)
        config = write_folder(model, a.out, tok)
        return f"wrote {config['architectures'][0]} ({sum(p.numel() for p in model.parameters())} parameters) → {a.out}"

    return run_command(action, (HfExportError, FileExistsError, ValueError))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
