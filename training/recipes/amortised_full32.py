# Issue 13 part 2, the full world (N = 3, six shapes, six colours) at 32x32: the amortised
# network with the ELBO recipe's budget (elbo_full32.py: 4000 iterations x 16), its baseline.
#   python -m renderer.dataset --count 30000 --seed 30 --out data/elbo-full-train --image-size 32
#   python -m renderer.dataset --count 1000 --seed 31 --out data/elbo-full-val --image-size 32
#   python -m training.train training/recipes/amortised_full32.py
from training.recipes.amortised_reduced import *  # noqa: F403  (batch, lr, evaluation)

data = "data/elbo-full-train"
val_data = "data/elbo-full-val"
out_dir = "runs/amortised-full32"
max_iters = 4000
export = "weights/reduced/amortised-full32.safetensors"
