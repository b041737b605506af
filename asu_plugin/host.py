"""Run open-unlearning's ``src/train.py`` / ``src/eval.py`` offline on a CPU, in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import transformers


def host_dir() -> Path:
    """``$OPEN_UNLEARNING_DIR``, else ``~/open-unlearning``."""
    return Path(
        os.environ.get("OPEN_UNLEARNING_DIR") or Path.home() / "open-unlearning"
    ).expanduser()


def is_host(path: Path) -> bool:
    return (Path(path) / "src" / "train.py").is_file()


def train_overrides(device="cpu") -> list[str]:
    """Overrides that let the host's trainer configs run on a CPU, or on one GPU in bf16."""
    overrides = ["trainer.args.optim=adamw_torch", "trainer.args.report_to=none"]
    if device == "cpu":
        overrides += [
            "trainer.args.warmup_epochs=null",  # the host divides by the GPU count
            "trainer.args.bf16=false",
            "trainer.args.bf16_full_eval=false",
        ]
    if int(transformers.__version__.split(".")[0]) >= 5:
        overrides.append("~trainer.args.logging_dir")  # gone from TrainingArguments
    return overrides


def link_tofu(run_dir: Path, tofu_dir: Path) -> None:
    """Make ``locuslab/TOFU`` in ``run_dir`` (the host's data path) load ``tofu_dir``."""
    link = Path(run_dir) / "locuslab" / "TOFU"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(Path(tofu_dir).resolve(), target_is_directory=True)


def run_host(host: Path, script: str, overrides, cwd: Path, device="cpu", **kwargs):
    """Run ``src/<script>`` of the host with Hydra ``overrides``, offline, in ``cwd``."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # datasets caches a local "locuslab/TOFU" under its config names alone: folders with
        # the same configs but other rows would read each other's cache, so one cache per run
        "HF_DATASETS_CACHE": str(Path(cwd) / ".hf_datasets"),
    }
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, str(Path(host) / "src" / script), *overrides]
    return subprocess.run(command, cwd=cwd, env=env, text=True, **kwargs)
