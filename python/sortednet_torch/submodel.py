"""Sub-models, the grid and its sampler, exactly as the TypeScript side defines them: a sub-model
is a budget per elastic dimension and uses the FIRST units of each (prefix slicing)."""
import math

DIMENSIONS = ("depth", "width", "heads", "ffn", "embed", "expand")
FRACTIONS = {"width", "ffn", "embed", "expand"}


def js_number(v):
    """A number as JavaScript prints it (`1`, `0.5`), so sub-model ids match the TypeScript ones."""
    v = float(v)
    if v == int(v) and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def sub_model_id(sub):
    """Stable id, e.g. `depth=2,width=0.5`; the full model is `full`."""
    parts = [f"{d}={js_number(sub[d])}" for d in DIMENSIONS if sub.get(d) is not None]
    for k in sorted((sub.get("layers") or {}).keys()):
        parts.append(f"{k}={js_number(sub['layers'][k])}")
    return ",".join(parts) if parts else "full"


def parse_sub_model(text, where="sub-model"):
    """`depth=2,width=0.5` (the id form) → dict; other keys are per-layer widths."""
    if text.strip() in ("", "full"):
        return {}
    out, layers = {}, {}
    for part in text.split(","):
        if "=" not in part:
            raise ValueError(f"{where}: cannot parse '{part}' in '{text}'; expected key=value pairs like depth=2,width=0.5")
        k, v = (s.strip() for s in part.split("=", 1))
        try:
            x = float(v)
        except ValueError:
            raise ValueError(f"{where}: '{v}' is not a number in '{part}'") from None
        if k in DIMENSIONS:
            out[k] = int(x) if k in ("depth", "heads") else x
        else:
            layers[k] = int(x)
    for d, x in out.items():
        if d in FRACTIONS and not 0 < x <= 1:
            raise ValueError(f"{where}: {d}={js_number(x)} must be a fraction in (0, 1]")
        if d not in FRACTIONS and (x != int(x) or x < 1):
            raise ValueError(f"{where}: {d}={js_number(x)} must be a positive integer")
    if layers:
        out["layers"] = layers
    return out


def units_for(fraction, full, multiple=1, where="width"):
    """ceil(fraction·full), rounded up to a multiple, at least `multiple`, at most `full`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"{where}: width fraction {fraction} must be in (0, 1]")
    u = math.ceil((fraction * full) / multiple - 1e-9) * multiple
    return min(full, max(multiple, u))


def check_units(units, full, where, what="width"):
    if units != int(units) or units < 1:
        raise ValueError(f"{what} {units} in '{where}' must be a positive integer")
    if units > full:
        raise ValueError(f"{what} {units} > layer size {full} in '{where}'")
    return int(units)


def layer_units(sub, name, full, fraction=None, multiple=1):
    """Units of layer `name`: a per-layer override, else `fraction` (default the width) of full."""
    override = (sub.get("layers") or {}).get(name)
    if override is not None:
        return check_units(override, full, name)
    return units_for(sub.get("width", 1) if fraction is None else fraction, full, multiple, name)


def check_depth(depth, lo, hi, family):
    d = hi if depth is None else depth
    if d != int(d) or not lo <= d <= hi:
        raise ValueError(f"{family}: depth {d} is outside {lo}..{hi}")
    return int(d)


def check_layer_names(sub, known, family):
    for k in (sub.get("layers") or {}):
        if k not in known:
            raise ValueError(f"{family}: sub-model names unknown layer '{k}'; elastic layers are: {', '.join(known)}")


def blocks_per_stage(stage_sizes, depth):
    """Depth order: blocks are added round-robin across stages (s0b0, s1b0, s2b0, s0b1, …)."""
    used = [0] * len(stage_sizes)
    left, rnd = depth, 0
    while left > 0:
        for s, n in enumerate(stage_sizes):
            if left > 0 and rnd < n:
                used[s] += 1
                left -= 1
        rnd += 1
    return used


class Grid:
    """The Cartesian product of per-dimension budgets, in the TypeScript side's order; per-layer
    width choices (`layers`, Mix'n'Match) are crossed in after, and then entries go cheapest first."""

    def __init__(self, spec, model):
        for d in spec:
            if d != "layers" and d not in DIMENSIONS:
                raise ValueError(f"grid: unknown dimension '{d}'; known: {', '.join(DIMENSIONS)}, layers")

        def sorted_budgets(values, what):
            if not isinstance(values, list) or not values or len(set(values)) != len(values):
                raise ValueError(f"grid: {what} needs a non-empty list of distinct budgets")
            return sorted(values)

        subs = [{}]
        for d in (d for d in DIMENSIONS if d in spec):
            subs = [{**s, d: v} for s in subs for v in sorted_budgets(spec[d], f"dimension '{d}'")]
        layer_names = sorted(spec.get("layers") or {})
        for n in layer_names:
            values = sorted_budgets(spec["layers"][n], f"layer '{n}'")
            subs = [{**s, "layers": {**s.get("layers", {}), n: v}} for s in subs for v in values]
        for s in subs:
            model.validate(s)
        if layer_names:  # stable, as JavaScript's sort
            subs.sort(key=model.flops)
        self.spec = spec
        self.subs = subs
        self.ids = [sub_model_id(s) for s in subs]

    def __len__(self):
        return len(self.subs)

    @property
    def largest(self):
        return len(self.subs) - 1


class Sampler:
    """P_B over grid indices: uniform or weighted; the largest/smallest may join every step."""

    def __init__(self, grid, options, random):
        weights = options.get("weights")
        if weights is None:
            w = [1.0] * len(grid)
        elif isinstance(weights, list):
            if len(weights) != len(grid):
                raise ValueError(f"sampler: {len(weights)} weights given for a grid of {len(grid)} sub-models")
            w = [float(x) for x in weights]
        else:
            w = [float(weights.get(i, 0)) for i in grid.ids]
        if any(not (x >= 0 and math.isfinite(x)) for x in w):
            raise ValueError("sampler: weights must be finite and >= 0")
        total = sum(w)
        if not total > 0:
            raise ValueError("sampler: weights sum to 0; give at least one sub-model a positive weight")
        self.cdf, acc = [], 0.0
        for x in w:
            acc += x / total
            self.cdf.append(acc)
        self.grid, self.options, self.random = grid, options, random

    def draw_one(self):
        u = self.random()
        lo, hi = 0, len(self.cdf) - 1
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.cdf[mid] > u:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def draw(self, g_acc):
        out = []
        if self.options.get("alwaysIncludeLargest"):
            out.append(len(self.grid) - 1)
        if self.options.get("alwaysIncludeSmallest") and len(out) < g_acc:
            out.append(0)
        while len(out) < g_acc:
            out.append(self.draw_one())
        return out


def cosine_lr(step, total, peak, warmup):
    """Cosine decay to 0 after a linear warm-up."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * peak * (1 + math.cos(math.pi * min(1, t)))
