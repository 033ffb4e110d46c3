"""Writes a sortednet LM as a Hugging Face folder with the package's exporter, and prints (JSON) the
package model's logits for the ids and how far the Hugging Face reference (hf.py, which follows the
`transformers` modelling code) is from them on the written folder.

    python hf_export_check.py CONFIG_JSON OUT_DIR IDS SEED
"""
import json
import math
import sys

import torch

from sortednet_torch.hf import load_folder, tiny_tokenizer_json
from sortednet_torch.hf_export import write_folder
from sortednet_torch.models import Transformer
from sortednet_torch.nn import Ctx


def main(config_json, out, ids, seed):
    torch.manual_seed(int(seed))
    model = Transformer(json.loads(config_json)).eval()
    with torch.no_grad():  # weights large enough that the logits are well apart
        for name, p in model.named_parameters():
            if p.dim() == 2:  # matrices (stored [out, in]) and embeddings
                p.copy_(torch.randn(p.shape) * 1.5 / math.sqrt(p.shape[-1]))
            elif name.endswith("weight"):  # a norm's gain
                p.copy_(1 + 0.2 * torch.randn(p.shape))
            else:  # a bias
                p.copy_(0.2 * torch.randn(p.shape))
    write_folder(model, out, json.dumps(tiny_tokenizer_json()))
    x = torch.tensor([[int(t) for t in ids.split(",")]])
    with torch.no_grad():
        ours = model(x, {}, Ctx("eval", None, None))[0]
        ref = load_folder(out)(x)[0]
    print(json.dumps({"logits": ours.tolist(), "reference": float((ours - ref).abs().max())}))


if __name__ == "__main__":
    main(*sys.argv[1:])
