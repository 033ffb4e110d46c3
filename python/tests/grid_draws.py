"""For each {spec, grid, sampler, gAcc, seed} case read from a JSON file: the grid's ids in order
and the sub-models the trainer draws at steps 0..9, printed as JSON (test/torch_grid.test.ts)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sortednet_torch import Grid, build_model  # noqa: E402
from sortednet_torch.rng import Rng, stream_seed  # noqa: E402
from sortednet_torch.submodel import Sampler  # noqa: E402

out = []
with open(sys.argv[1], encoding="utf-8") as f:
    cases = json.load(f)
for c in cases:
    grid = Grid(c["grid"], build_model(c["spec"]))
    draws = []
    for step in range(10):
        rng = Rng(stream_seed(c["seed"], 7919, step))
        draws.append([grid.ids[i] for i in Sampler(grid, c["sampler"], rng.next).draw(c["gAcc"])])
    out.append({"ids": grid.ids, "draws": draws})
print(json.dumps(out))
