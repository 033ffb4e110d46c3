"""`torchrun` with one fix for PyTorch 1.13 on Python 3.11 (Debian 12's python3-torch): there,
torchrun's --redirects/--tee parsing returns None for its defaults (Python 3.11 no longer lists
the zero and multi-bit members of an IntFlag) and every launch fails with
"'NoneType' object has no attribute 'get'". Same arguments as torchrun:

    python3 -m sortednet_torch.torchrun --nproc_per_node 2 -m sortednet_torch.train --run DIR

Newer PyTorch needs no fix; this then just runs torchrun.
"""
import re

from torch.distributed import run
from torch.distributed.elastic.multiprocessing import api


def _from_str(vm):
    if re.match(api._VALUE_REGEX, vm):
        return api.Std(int(vm))
    if re.match(api._MAPPING_REGEX, vm):
        return {int(i): api.Std(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
    raise ValueError(f"{vm} does not match: <{api._VALUE_REGEX}> or <{api._MAPPING_REGEX}>")


if api.Std.from_str("0") is None:  # the broken combination
    api.Std.from_str = staticmethod(_from_str)

if __name__ == "__main__":
    run.main()
