# Issue 13 part 2, the full world (N = 3, six shapes, six colours) at 32x32: the ELBO alone with
# the reduced world's recipe (elbo_fit_places.py) and the same budget as amortised_full32.py.
#   python -m training.train training/recipes/elbo_full32.py
from training.recipes.elbo_fit_places import *  # noqa: F403

data = "data/elbo-full-train"
val_data = "data/elbo-full-val"
out_dir = "runs/elbo-full32"
export = "weights/reduced/elbo-full32.safetensors"
