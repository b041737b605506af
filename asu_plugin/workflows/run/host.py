"""Run open-unlearning's ``src/train.py`` / ``src/eval.py`` offline, in a subprocess; load
its models and encode QA pairs in-process, as it does."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import torch
import transformers
from omegaconf import OmegaConf
from packaging.version import Version

from asu_plugin.workflows.run.entry import WorkflowError

# transformers 5 dropped TrainingArguments.logging_dir and sizes DeepSpeed's batch differently
TRANSFORMERS_5 = Version(transformers.__version__).major >= 5
CLONE = "git clone https://github.com/locuslab/open-unlearning ~/open-unlearning"


def host_dir() -> Path:
    """``$OPEN_UNLEARNING_DIR``, else ``~/open-unlearning``."""
    return Path(
        os.environ.get("OPEN_UNLEARNING_DIR") or Path.home() / "open-unlearning"
    ).expanduser()


def is_host(path: Path) -> bool:
    return (Path(path) / "src" / "train.py").is_file()


class HostMissing(WorkflowError):
    """No open-unlearning checkout where one was looked for; the message says how to get one."""


def require_host(path=None) -> Path:
    """The host checkout at ``path`` (default ``host_dir()``), else ``HostMissing``."""
    path = Path(path).expanduser() if path else host_dir()
    if not is_host(path):
        raise HostMissing(
            f"No open-unlearning checkout at {path}: {CLONE} "
            "(or set OPEN_UNLEARNING_DIR to your checkout)"
        )
    return path


def host_commit(host: Path) -> str:
    """``<short hash> <subject>`` of the host checkout, or "" if it is no git checkout."""
    return subprocess.run(
        ["git", "-C", str(host), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
    ).stdout.strip()


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device="auto") -> str:
    """``cuda`` or ``cpu`` for a workflow's ``device`` setting: ``auto`` is the GPU when torch
    sees one."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda': torch sees no GPU here (use auto or cpu)")
    return device


def describe_device(device, threads=None) -> str:
    """``GPU (<name>)`` or ``CPU (<n> threads)``: what a workflow's first line says.
    ``threads``: the CPU threads it uses (default: each host run's ``OMP_NUM_THREADS``)."""
    if device == "cuda":
        return f"GPU ({torch.cuda.get_device_name()})"
    threads = int(threads or os.environ.get("OMP_NUM_THREADS", 1))
    return f"CPU ({threads} thread{'s' * (threads > 1)})"


def device_overrides(device="cpu") -> list[str]:
    """Overrides that let the host's trainer configs run on a CPU, or on one GPU in bf16."""
    overrides = ["trainer.args.optim=adamw_torch", "trainer.args.report_to=none"]
    if device == "cpu":
        overrides += [
            "trainer.args.warmup_epochs=null",  # the host divides by the GPU count
            "trainer.args.bf16=false",
            "trainer.args.bf16_full_eval=false",
        ]
    if TRANSFORMERS_5:
        overrides.append("~trainer.args.logging_dir")  # gone from TrainingArguments
    return overrides


# src/train.py saves the model and nothing else: no evaluation during or after training
NO_EVAL = (
    "trainer.args.do_eval=false",
    "trainer.args.eval_on_start=false",
    "trainer.args.eval_strategy=no",
)


def model_overrides(path, model="phi-1_5", tokenizer=None) -> list[str]:
    """Load ``path`` (tokenizer from ``tokenizer`` or ``path``) with host model config ``model``.

    The default, ``phi-1_5``, is the host's plain "Question: ... Answer: ..." template.
    """
    return [
        f"model={model}",
        f"model.model_args.pretrained_model_name_or_path={path}",
        f"model.tokenizer_args.pretrained_model_name_or_path={tokenizer or path}",
    ]


def teacher_overrides(temperature, layers=None) -> list[str]:
    """``src/eval.py`` overrides that score the model as ASU's forget-teacher: its attention
    smoothed at ``temperature`` on ``layers`` (None: all)."""
    overrides = [
        "+model.model_handler=AttentionSmoothedForCausalLM",
        f"+model.model_args.attention_temperature={temperature}",
    ]
    if layers is not None:
        overrides.append(f"+model.model_args.attention_layers={layers}")
    return overrides


def link_tofu(run_dir: Path, tofu_dir: Path) -> None:
    """Make ``locuslab/TOFU`` in ``run_dir`` (the host's data path) load ``tofu_dir``."""
    link = Path(run_dir) / "locuslab" / "TOFU"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(Path(tofu_dir).resolve(), target_is_directory=True)


def hydra_list(items) -> str:
    """A Hydra override value holding a list of strings or of flat dicts."""
    return "[" + ",".join(map(_hydra_item, items)) + "]"


def _hydra_item(item) -> str:
    if isinstance(item, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in item.items()) + "}"
    return f"'{item}'"


def run_host(
    host: Path, script: str, overrides, cwd: Path, device="cpu", launcher=(), **kwargs
):
    """Run ``src/<script>`` of the host with Hydra ``overrides``, offline, in ``cwd``;
    ``launcher``: a Python script (and its arguments) that runs it."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # datasets caches a local "locuslab/TOFU" under its config names alone: folders with
        # the same configs but other rows would read each other's cache, so one cache per run
        "HF_DATASETS_CACHE": str(Path(cwd) / ".hf_datasets"),
    }
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, *launcher, str(Path(host) / "src" / script), *overrides]
    return subprocess.run(command, cwd=cwd, env=env, text=True, **kwargs)


def host_module(host, name):
    """Import ``name`` from the host checkout's ``src`` (put on ``sys.path`` first)."""
    src = str(Path(host) / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return importlib.import_module(name)


def host_encoder(host, tokenizer, template_args, max_length):
    """``encode(question, answer, generate)``: the host's ``preprocess_chat_instance``."""
    preprocess = host_module(host, "data.utils").preprocess_chat_instance
    template = OmegaConf.to_container(template_args, resolve=True)

    def encode(question, answer, generate=False):
        return preprocess(
            tokenizer, template, [question], [answer], max_length, generate
        )

    return encode


def load_model(host, model_cfg, device="cpu"):
    """Model and tokenizer as the host's ``get_model`` loads them for ``model_cfg``, the
    model on ``device``."""
    model, tokenizer = host_module(host, "model").get_model(model_cfg.copy())
    return model.to(device).eval(), tokenizer
