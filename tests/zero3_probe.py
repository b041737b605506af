"""``python zero3_probe.py HOST_SRC RECORD overrides...``: the host's src/train.py, run in this
process, writing how each frozen reference leaves the host's ``_prepare_deepspeed`` to
``RECORD.<rank>`` (its ZeRO stage and, per parameter, local / partition / full sizes)."""

import json
import os
import runpy
import sys
from pathlib import Path

host_src, record = Path(sys.argv[1]), sys.argv[2]
sys.argv = [str(host_src / "train.py"), *sys.argv[3:]]
sys.path.insert(0, str(host_src))

from trainer.unlearn.base import UnlearnTrainer  # noqa: E402

prepare = UnlearnTrainer._prepare_deepspeed


def recorded(self, model):
    engine = prepare(self, model)
    params = list(engine.module.parameters())
    rank = os.environ.get("RANK", "0")
    Path(f"{record}.{rank}").write_text(
        json.dumps(
            {
                "stage": engine.zero_optimization_stage(),
                "local": sum(p.numel() for p in params),
                "partition": sum(p.ds_tensor.numel() for p in params),
                "full": sum(p.ds_numel for p in params),
            }
        )
    )
    return engine


UnlearnTrainer._prepare_deepspeed = recorded
runpy.run_path(sys.argv[0], run_name="__main__")
