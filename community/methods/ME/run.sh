#!/bin/bash
# ME (maximising entropy) on open-unlearning's TOFU forget01/05/10, the ASU paper's settings
# (experiment unlearn/tofu/me: gamma 0.1, alpha 1, lr 1e-5, 5 epochs, batch 32).
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
experiment=${EXPERIMENT:-unlearn/tofu/me}
trainers=${TRAINERS:-ME_GD ME_KL}
for trainer in ${trainers}; do
    for splits in "forget01 retain99 holdout01" "forget05 retain95 holdout05" "forget10 retain90 holdout10"; do
        read -r forget_split retain_split holdout_split <<< "${splits}"
        task_name=tofu_${model}_${forget_split}_${trainer}
        retain_logs=saves/eval/tofu_${model}_${retain_split}/TOFU_EVAL.json
        warmup_epochs=1.0
        if [[ ${forget_split} == forget01 ]]; then warmup_epochs=0; fi
        run python src/train.py --config-name=unlearn.yaml \
            experiment=${experiment} trainer=${trainer} task_name=${task_name} \
            model=${model} model.model_args.pretrained_model_name_or_path=${model_path} \
            forget_split=${forget_split} retain_split=${retain_split} \
            holdout_split=${holdout_split} retain_logs_path=${retain_logs} \
            trainer.args.per_device_train_batch_size=8 \
            trainer.args.gradient_accumulation_steps=4 \
            trainer.args.warmup_epochs=${warmup_epochs} \
            ${EXTRA_ARGS:-}
        run python src/eval.py experiment=eval/tofu/default task_name=${task_name} \
            model=${model} model.model_args.pretrained_model_name_or_path=saves/unlearn/${task_name} \
            forget_split=${forget_split} holdout_split=${holdout_split} \
            retain_logs_path=${retain_logs} paths.output_dir=saves/unlearn/${task_name}/evals
    done
done
