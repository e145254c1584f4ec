#!/usr/bin/env bash
# The four rows of the Fashion-MNIST table (docs/results/fashion_mnist.md) and the rows
# beyond it (fashion_hvae_vamp_iwae, trained on from fashion_hvae_vamp's best, then
# fashion_hvae_vamp_iwae_cosine from that one's), one after
# another: each trains (resuming from its workdir, or finding it finished), then its best
# validation checkpoint is evaluated on the test split, unless eval_test.json has it all:
# log p(x) by IWAE with K = 5000 on the 10,000 images, and the gap's decomposition
# (approximation / amortisation) on the first 1,000, q* of a hierarchy fitted in its own
# family on the first 250 (twice the cost of the mean-field fit per image). Rerun the
# same command to resume after a stop, in this session or a later one.
#
#   bash scripts/fashion_mnist_rows.sh [ROOT=runs/fashion_mnist] [SEED=0] [ROWS...]
set -euo pipefail
main() {
  root=${1:-runs/fashion_mnist}
  seed=${2:-0}
  shift $(( $# > 2 ? 2 : $# ))
  rows=("$@")
  (( ${#rows[@]} )) || rows=(fashion_vae fashion_hvae fashion_vae_vamp fashion_hvae_vamp
                             fashion_hvae_vamp_iwae fashion_hvae_vamp_iwae_cosine)
  for row in "${rows[@]}"; do
    workdir="$root/${row}_seed$seed"
    # A row trained on from another row's best checkpoint names it in its config's SOURCE.
    source_row=$(python -c "from vae.configs import $row; print(getattr($row, 'SOURCE', ''))")
    source=()
    [[ -n "$source_row" ]] && source=(--config.train.init_from="$root/${source_row}_seed$seed")
    python -m experiments.train --config="configs/$row.py" --workdir="$workdir" \
        --config.seed="$seed" "${source[@]}"
    # Evaluated unless eval_test.json is the test of the best checkpoint best.json names
    # now, with its decomposition (a test alone, of an earlier best, or cut short during
    # the decomposition, is redone).
    if ! python -c "import sys; from scripts.fashion_mnist_table import test_of_best
test = test_of_best(sys.argv[1]); sys.exit(not (test and test['gap_decomposition']))" \
        "$workdir"; then
      python -m experiments.evaluate --workdir="$workdir" --best --split=test \
          --num_importance_samples=5000 --decompose_gap --num_examples=1000 \
          --gap_family_examples=250
    fi
  done
}
# All of it is read before it runs, so editing this file cannot derail a running driver.
main "$@"; exit
