# Issue 13 part 2, the full world (N = 3, six shapes, six colours) at 32x32: the ELBO alone with
# the reduced world's best-balanced recipe (elbo_enumerated.py, recipe G: count and colour met in
# 5 of 5 seeds there) and the same budget as amortised_full32.py (4000 iterations of 16).
#   python -m training.train training/recipes/elbo_full32.py            (add --resume=True to go on)
from training.recipes.elbo_enumerated import *  # noqa: F403

data = "data/elbo-full-train"
val_data = "data/elbo-full-val"
max_iters = 4000
out_dir = "runs/elbo-full32"
export = "weights/reduced/elbo-full32.safetensors"
