"""Random-weight torchvision classifiers in eval mode, for test/torchvision_import.test.ts: for each
case {arch, classes, size, seed} of the JSON list in argv[2], writes to the folder argv[1]
`<arch>.safetensors` (its state dict as `safetensors.torch.save_file` writes it: F32 weights, I64
num_batches_tracked) and `<arch>.io.safetensors` (an NHWC input batch and torchvision's logits)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import torch  # noqa: E402
import torchvision  # noqa: E402
from sortednet_torch import safetensors_io  # noqa: E402


def write(path, tensors):
    with open(path, "wb") as f:
        f.write(safetensors_io.encode(tensors))


out, cases = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(1)
for c in cases:
    torch.manual_seed(c["seed"])
    model = getattr(torchvision.models, c["arch"])(num_classes=c["classes"])
    # torchvision initialises BatchNorm to γ 1, β 0, mean 0, var 1, which would hide a swapped field.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(1000 + c["seed"])
    model.eval()
    x = torch.randn(2, 3, c["size"], c["size"])
    with torch.no_grad():
        y = model(x)
        # Random deep nets can give logits of ~100, where float32 rounding alone reaches 1e-4:
        # scale the classifier so they stay near 4 (a bug in the layers still shows at full size).
        head = model.fc if hasattr(model, "fc") else model.classifier[1]
        scale = min(1.0, 4.0 / float(y.abs().max()))
        head.weight.mul_(scale)
        head.bias.mul_(scale)
        y = model(x)
    write(os.path.join(out, f"{c['arch']}.safetensors"), {k: v.numpy() for k, v in model.state_dict().items()})
    write(
        os.path.join(out, f"{c['arch']}.io.safetensors"),
        {"input": x.permute(0, 2, 3, 1).contiguous().numpy(), "logits": y.numpy()},
    )
