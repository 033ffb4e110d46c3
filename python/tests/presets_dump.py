"""The package's model presets and families as JSON, for the image shapes given as a JSON list of
[channels, size, classes] (test/torch_presets.test.ts compares them with the TypeScript presets)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sortednet_torch.models import FAMILIES  # noqa: E402
from sortednet_torch.presets import PRESETS  # noqa: E402

shapes = json.loads(sys.argv[1])
print(json.dumps({
    "families": list(FAMILIES),
    "presets": {
        name: {"grid": grid, "models": [build(*shape) for shape in shapes]}
        for name, (build, grid) in PRESETS.items()
    },
}))
