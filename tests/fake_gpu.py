"""``python fake_gpu.py RECORD MODULE ARGS...`` runs ``python -m MODULE ARGS`` where the
workflows' device lookup sees one GPU (torch itself is left as it is). The host's scripts
do not run: each one's command and environment is appended to RECORD (JSON lines) and it
fails. A model moved to ``cuda`` stops the command (exit 3): it asked for the GPU."""

import json
import runpy
import subprocess
import sys
from types import SimpleNamespace

import torch

from asu_plugin.workflows.run import host

GPU = "Fake GPU 80GB"
record, module, *args = sys.argv[1:]
cuda = SimpleNamespace(is_available=lambda: True, get_device_name=lambda *_: GPU)
host.torch = SimpleNamespace(cuda=cuda)
run, move = subprocess.run, torch.nn.Module.to


def host_run(command, env=None, **kwargs):
    if not any(str(part).endswith(("train.py", "eval.py")) for part in command):
        return run(command, env=env, **kwargs)  # e.g. git, for the host's commit
    with open(record, "a") as f:
        f.write(json.dumps({"command": command, "env": env}) + "\n")
    return subprocess.CompletedProcess(command, 1)


def to(module, *args, **kwargs):
    if "cuda" in map(str, (*args, *kwargs.values())):
        print("moved to cuda", flush=True)
        raise SystemExit(3)
    return move(module, *args, **kwargs)


subprocess.run, torch.nn.Module.to = host_run, to
sys.argv = [module, *args]
runpy.run_module(module, run_name="__main__", alter_sys=True)
