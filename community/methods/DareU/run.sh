#!/bin/bash
# DareU on open-unlearning's TOFU forget01/05/10 (experiment unlearn/tofu/dareu: lr 1e-5,
# 5 epochs, 8 prompts x 4 samples, 4-step accumulation). Each forget split needs its owner
# classifier, made by asu-plugin's tool (pip install asu-plugin):
#   python -m asu_plugin.workflows.owner_classifier model=Llama-3.2-1B-Instruct data_dir=<TOFU jsonl> \
#       forget_split=<split> target=<full model> out_dir=saves/owner_classifier/<split>
# Run from the open-unlearning root with the method in it (this folder's pull request, or
# pip install asu-plugin), after `python setup_data.py --eval_logs` (retain-model logs).
# DRY_RUN=1 bash run.sh composes every command's config (Hydra --cfg job) and trains nothing.
set -euo pipefail

dry_run=()
if [[ "${DRY_RUN:-0}" == 1 ]]; then dry_run=(--cfg job); fi
run() {
    echo "+ $*"
    "$@" "${dry_run[@]}"
}

model=Llama-3.2-1B-Instruct
model_path=open-unlearning/tofu_${model}_full
for splits in "forget01 retain99 holdout01" "forget05 retain95 holdout05" "forget10 retain90 holdout10"; do
    read -r forget_split retain_split holdout_split <<< "${splits}"
    task_name=tofu_${model}_${forget_split}_DareU
    retain_logs=saves/eval/tofu_${model}_${retain_split}/TOFU_EVAL.json
    run python src/train.py --config-name=unlearn.yaml \
        experiment=unlearn/tofu/dareu task_name=${task_name} \
        model=${model} model.model_args.pretrained_model_name_or_path=${model_path} \
        forget_split=${forget_split} retain_split=${retain_split} \
        holdout_split=${holdout_split} retain_logs_path=${retain_logs} \
        trainer.method_args.classifier=saves/owner_classifier/${forget_split}/classifier \
        ${EXTRA_ARGS:-}
    run python src/eval.py experiment=eval/tofu/default task_name=${task_name} \
        model=${model} model.model_args.pretrained_model_name_or_path=saves/unlearn/${task_name} \
        forget_split=${forget_split} holdout_split=${holdout_split} \
        retain_logs_path=${retain_logs} paths.output_dir=saves/unlearn/${task_name}/evals
done
