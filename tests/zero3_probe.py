"""``python zero3_probe.py HOST_SRC PREFIX overrides...``: the host's src/train.py, run in this
process. Each rank writes its output to ``PREFIX.rank<rank>.log`` (and, if it is killed or
crashes, the stacks of its threads) and how its frozen reference left the host's
``_prepare_deepspeed`` to ``PREFIX.ref<rank>.json`` (its ZeRO stage and, per parameter, local /
partition / full sizes)."""

import faulthandler
import json
import os
import runpy
import signal
import sys
from pathlib import Path

host_src, prefix = Path(sys.argv[1]), sys.argv[2]
rank = os.environ.get("RANK", "0")
log = open(f"{prefix}.rank{rank}.log", "w")  # open until the process ends
for stream in (sys.stdout, sys.stderr):
    stream.flush()
    os.dup2(log.fileno(), stream.fileno())
sys.stdout.reconfigure(line_buffering=True)
faulthandler.enable(file=log, all_threads=True)  # crashes
faulthandler.register(signal.SIGTERM, file=log, all_threads=True, chain=True)
sys.argv = [str(host_src / "train.py"), *sys.argv[3:]]
sys.path.insert(0, str(host_src))

from trainer.unlearn.base import UnlearnTrainer  # noqa: E402

prepare = UnlearnTrainer._prepare_deepspeed


def recorded(self, model):
    engine = prepare(self, model)
    params = list(engine.module.parameters())
    Path(f"{prefix}.ref{rank}.json").write_text(
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
# The run is complete (model saved, logs written). Skip the interpreter's teardown: there, a
# C++ thread left by gloo / DeepSpeed aborted a finished rank about once in 16 launches
# ("terminate called without an active exception", exit -6), and the launcher then failed
# the whole run although both ranks had finished.
log.flush()
os._exit(0)
