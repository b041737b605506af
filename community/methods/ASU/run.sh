#!/bin/bash
# ASU on open-unlearning: TOFU forget01/05/10, MUSE News/Books, WMDP and continual TOFU.
# Run from the open-unlearning root with the method in it (this folder's pull request, or
# pip install asu-plugin),
# after `python setup_data.py --eval_logs` (TOFU retain-model logs for forget quality).
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

########################################### TOFU ###########################################
# Paper settings (experiment unlearn/tofu/asu): τ 2.3, gamma 0.1 (the paper's α), lr 1e-5, 5 epochs, batch 32.
forget_retain_splits=(
    "forget01 retain99 holdout01"
    "forget05 retain95 holdout05"
    "forget10 retain90 holdout10"
)
for trainer in ASU_GD ASU_KL; do
    for splits in "${forget_retain_splits[@]}"; do
        read -r forget_split retain_split holdout_split <<< "${splits}"
        task_name=tofu_${model}_${forget_split}_${trainer}
        retain_logs=saves/eval/tofu_${model}_${retain_split}/TOFU_EVAL.json
        warmup_epochs=1.0
        if [[ ${forget_split} == forget01 ]]; then warmup_epochs=0; fi
        run python src/train.py --config-name=unlearn.yaml \
            experiment=unlearn/tofu/asu \
            trainer=${trainer} \
            task_name=${task_name} \
            model=${model} \
            model.model_args.pretrained_model_name_or_path=${model_path} \
            forget_split=${forget_split} \
            retain_split=${retain_split} \
            holdout_split=${holdout_split} \
            retain_logs_path=${retain_logs} \
            trainer.args.per_device_train_batch_size=8 \
            trainer.args.gradient_accumulation_steps=4 \
            trainer.args.warmup_epochs=${warmup_epochs}
        run python src/eval.py \
            experiment=eval/tofu/default \
            task_name=${task_name} \
            model=${model} \
            model.model_args.pretrained_model_name_or_path=saves/unlearn/${task_name} \
            forget_split=${forget_split} \
            holdout_split=${holdout_split} \
            retain_logs_path=${retain_logs} \
            paths.output_dir=saves/unlearn/${task_name}/evals
    done
done

########################################### MUSE ###########################################
# News: τ 2.0, gamma 0.35; Books: τ 2.35, gamma 0.001 (experiment unlearn/muse/asu).
muse_settings=(
    "News 2.0 0.35"
    "Books 2.35 0.001"
)
for setting in "${muse_settings[@]}"; do
    read -r data_split temperature gamma <<< "${setting}"
    task_name=muse_Llama-2-7b-hf_${data_split}_ASU_KL
    retain_logs=saves/eval/muse_Llama-2-7b-hf_${data_split}_retrain/MUSE_EVAL.json
    run python src/train.py --config-name=unlearn.yaml \
        experiment=unlearn/muse/asu \
        task_name=${task_name} \
        data_split=${data_split} \
        trainer.method_args.temperature=${temperature} \
        trainer.method_args.gamma=${gamma} \
        retain_logs_path=${retain_logs}
    run python src/eval.py \
        experiment=eval/muse/default \
        task_name=${task_name} \
        data_split=${data_split} \
        retain_logs_path=${retain_logs} \
        model.model_args.pretrained_model_name_or_path=saves/unlearn/${task_name} \
        paths.output_dir=saves/unlearn/${task_name}/evals
done

########################################### WMDP ###########################################
# Logit-level ASU, untuned start (τ 2.0, gamma 0.1); evaluated by lm-eval (WMDP-cyber, MMLU).
run python src/train.py --config-name=unlearn.yaml \
    experiment=unlearn/wmdp/asu \
    task_name=wmdp_zephyr-7b-beta_cyber_ASU_KL
# Representation-level ASU, the paper's WMDP variant: RMU with the forget-teacher's layer-7
# activations as the forget target (the release's settings: τ 100, retain weight 100, 80 steps).
run python src/train.py --config-name=unlearn.yaml \
    experiment=unlearn/wmdp/asu_rmu \
    task_name=wmdp_zephyr-7b-beta_cyber_ASU_RMU

##################################### Continual TOFU #######################################
# Requests applied one after another, each from the previous model (teacher re-taken).
run python -m asu_plugin.workflows.continual \
    task_name=continual_tofu_${model}_ASU_KL \
    model_config=${model} \
    model_path=${model_path} \
    method=ASU_KL \
    unlearn_experiment=unlearn/tofu/asu \
    "train_overrides=['trainer.args.per_device_train_batch_size=8','trainer.args.gradient_accumulation_steps=4']"
