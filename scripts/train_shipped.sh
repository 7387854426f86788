#!/usr/bin/env bash
# Train the networks fastnst ships (checkpoints/*.pt), then write their release files:
#
#   bash scripts/train_shipped.sh [SHARED [RUNS]]     # defaults: ../shared, outputs/shipped
#
# Each painting: the default (Johnson) network against the real ImageNet VGG16 features of
# SHARED/models, bf16 autocast, on SHARED/data/coco/train2017, validated on
# SHARED/data/content; phase 1 at 128 px for P1 steps, then the same run continued at 256 px
# up to P2 steps. Rerun it to resume: finished phases are skipped, a phase that was
# stopped resumes from its last.ckpt. STYLES, P1 and P2 may be set in the environment.
# P3 > 0 adds a third phase: P3 more steps at 256 px with a new optimiser, the learning rate
# warmed up over 10 steps and annealed to 0 (cosine),
# starting (init=) from a copy of phase 2's model, RUNS/<name>.ckpt, or where that is not
# there (the runs of an earlier machine), of the shipped release checkpoints/<name>.pt; its
# model is RUNS/p3/<name>.ckpt. P3 alone (with P1=0 P2=0) runs only this phase.
set -u
cd "$(dirname "$0")/.."
SHARED=$(realpath "${1:-../shared}")
RUNS=$(realpath -m "${2:-outputs/shipped}")
PY=${PY:-.venv/bin/python}
STYLES=${STYLES:-"starry_night wave the_scream composition_vii the_shipwreck_of_the_minotaur mondrian"}
P1=${P1:-500}
P2=${P2:-600}
mkdir -p "$RUNS"
common() {
  echo style.name="$1" style.image="$SHARED/data/styles/$1.jpg" style.weight=3.0 \
    data.root="$SHARED/data/coco/train2017" data.val_root="$SHARED/data/content" \
    loss.network=vgg16 loss.vgg_weights="$SHARED/models/vgg16_features.pth" \
    trainer.precision=bf16-mixed lr=1e-3 checkpoint_dir="$RUNS" name="$1" \
    checkpoint_every=100 trainer.val_check_interval=100 trainer.log_every_n_steps=20
}
P3=${P3:-0}
for s in $STYLES; do
  [ "$P1" -gt 0 ] || break
  [ -f "$RUNS/$s.p1.done" ] && continue
  resume=""; [ -f "$RUNS/$s/last.ckpt" ] && resume="resume=last"
  $PY -m fastnst.train $(common "$s") data.image_size=128 trainer.max_steps="$P1" $resume \
    && touch "$RUNS/$s.p1.done"
done
for s in $STYLES; do
  [ "$P2" -gt 0 ] || break
  [ -f "$RUNS/$s.p2.done" ] && continue
  $PY -m fastnst.train $(common "$s") data.image_size=256 trainer.max_steps="$P2" \
    resume=last resume_changes=accept && touch "$RUNS/$s.p2.done"
done
for s in $STYLES; do
  [ "$P3" -gt 0 ] || break
  [ -f "$RUNS/$s.p3.done" ] && continue
  # A copy of the starting point: release_models.py reads its steps and command from it
  # after checkpoints/<name>.pt has been replaced.
  from="$RUNS/p3/$s.init.pt"
  if [ ! -f "$from" ]; then
    mkdir -p "$RUNS/p3"
    if [ -f "$RUNS/$s.ckpt" ]; then cp "$RUNS/$s.ckpt" "$from"; else cp "checkpoints/$s.pt" "$from"; fi
  fi
  resume=""; [ -f "$RUNS/p3/$s/last.ckpt" ] && resume="resume=last"
  $PY -m fastnst.train $(common "$s") checkpoint_dir="$RUNS/p3" init="$from" \
    data.image_size=256 trainer.max_steps="$P3" lr_schedule=cosine lr_warmup=10 $resume \
    && touch "$RUNS/$s.p3.done"
done
if [ "$P3" -gt 0 ]; then
  phase1=""; [ "$P1" -gt 0 ] && phase1="--phase1-steps $P1"
  $PY scripts/release_models.py --runs "$RUNS/p3" $phase1 --photos "$SHARED/data/content"
else
  $PY scripts/release_models.py --runs "$RUNS" --phase1-steps "$P1" --photos "$SHARED/data/content"
fi
