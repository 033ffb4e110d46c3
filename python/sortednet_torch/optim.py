"""The TypeScript side's optimizers, update for update, with state under the same names
(`<param>.m`, `<param>.v` for AdamW, `<param>.buf` for SGD) so a run resumes in either
implementation. Decay is decoupled for AdamW and an L2 term for SGD, on weights of rank > 1 only."""
import torch

DEFAULT_TRAIN = {
    "strategy": "sorted",
    "steps": 300,
    "batchSize": 64,
    "gAcc": 4,
    "sameBatch": False,
    "sampler": {},
    "distill": False,
    "optimizer": {"kind": "adamw", "lr": 3e-3, "weightDecay": 0.01},
    "warmupSteps": 20,
    "labelSmoothing": 0,
    "augment": {"cropPadding": 0, "flip": False},
    "seed": 1,
    "checkpointEvery": 100,
    "keepCheckpoints": 2,
    "nonFinite": "stop",
}


def resolve_train_config(partial, where="train config"):
    # temperature: the dynamic-conv schedule of PAD models, which have no dynamic layers here
    known = set(DEFAULT_TRAIN) | {"lossWeights", "temperature"}
    for k in partial:
        if k not in known:
            raise ValueError(f"{where}: unknown field '{k}'; known fields: {', '.join(sorted(known))}")
    c = {**DEFAULT_TRAIN, **partial}
    c["optimizer"] = {**DEFAULT_TRAIN["optimizer"], **partial.get("optimizer", {})}
    c["augment"] = {**DEFAULT_TRAIN["augment"], **partial.get("augment", {})}
    c["sampler"] = dict(partial.get("sampler", {}))
    for k in ("steps", "batchSize", "gAcc", "keepCheckpoints"):
        if not isinstance(c[k], int) or c[k] < 1:
            raise ValueError(f"{where}: {k} must be a positive integer, got {c[k]}")
    if not isinstance(c["checkpointEvery"], int) or c["checkpointEvery"] < 0:
        raise ValueError(f"{where}: checkpointEvery must be an integer >= 0 (0: only at the end), got {c['checkpointEvery']}")
    if c["nonFinite"] not in ("stop", "skip"):
        raise ValueError(f"{where}: nonFinite must be 'stop' or 'skip', got '{c['nonFinite']}'")
    if c["optimizer"]["kind"] not in ("sgd", "adamw"):
        raise ValueError(f"{where}: optimizer.kind must be 'sgd' or 'adamw', got '{c['optimizer']['kind']}'")
    lr = c["optimizer"].get("lr")
    if not isinstance(lr, (int, float)) or not lr > 0:  # as the TypeScript schema (checkpoints stay readable there)
        raise ValueError(f"{where}: optimizer.lr must be > 0, got {lr}")
    return c


class Optimizer:
    def __init__(self, config, named_params):
        self.config, self.params = config, list(named_params)
        self.state = {}
        self.step = 0

    @torch.no_grad()
    def apply(self, lr):
        """One update from the parameters' .grad (parameters without a gradient are left alone)."""
        self.step += 1
        c = self.config
        wd = c.get("weightDecay", 0) or 0
        for name, p in self.params:
            g = p.grad
            if g is None:
                continue
            decays = wd > 0 and p.dim() > 1  # no decay on biases and norm scales
            if c["kind"] == "sgd":
                gd = g + p * wd if decays else g
                old = self.state.get(f"{name}.buf")
                buf = old * c.get("momentum", 0.9) + gd if old is not None else gd.clone()
                self.state[f"{name}.buf"] = buf
                p.sub_(buf * lr)
            else:
                b1, b2, eps = c.get("beta1", 0.9), c.get("beta2", 0.999), c.get("epsilon", 1e-8)
                m0, v0 = self.state.get(f"{name}.m"), self.state.get(f"{name}.v")
                m = m0 * b1 + g * (1 - b1) if m0 is not None else g * (1 - b1)
                v = v0 * b2 + g * g * (1 - b2) if v0 is not None else g * g * (1 - b2)
                self.state[f"{name}.m"], self.state[f"{name}.v"] = m, v
                m_hat = m / (1 - b1**self.step)
                v_hat = v / (1 - b2**self.step)
                nxt = p - m_hat / (v_hat.sqrt() + eps) * lr
                if decays:
                    nxt = nxt - p * (lr * wd)
                p.copy_(nxt)

    def load(self, step, state, device):
        self.step = step
        self.state = {k: t.to(device) for k, t in state.items()}
