"""Prints (JSON) how far a run's latest weights are from the model it was initialised from (a
Hugging Face folder or a sortednet run), the largest |difference| per parameter kind, and the
step of the run's checkpoint.

    python init_from_check.py SOURCE RUN
"""
import json
import sys

from sortednet_torch.checkpoint import load_checkpoint, read_meta
from sortednet_torch.hf_import import load_model


def main(source, run):
    try:
        read_meta(source)
        src = load_checkpoint(source, skip_optimizer=True, calibrated=False).model
    except FileNotFoundError:  # a Hugging Face folder
        src = load_model(source)[0]
    ck = load_checkpoint(run, skip_optimizer=True)
    mine = dict(ck.model.named_parameters())
    diffs = {n: float((p.detach() - mine[n].detach()).abs().max()) for n, p in src.named_parameters()}
    print(json.dumps({"step": ck.meta["step"], "max": max(diffs.values()), "changed": sum(d > 0 for d in diffs.values()),
                      "parameters": len(diffs), "tokenizer": "tokenizer.json" in ck.extra_files}))


if __name__ == "__main__":
    main(*sys.argv[1:])
