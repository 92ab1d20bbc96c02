# weights/reduced/elbo.safetensors: the ELBO alone, from scratch, in the reduced world, with the
# amortised run's data and budget (amortised_reduced.py) plus the research knobs below.
#   python -m training.train training/recipes/elbo_reduced.py
from training.recipes.amortised_reduced import *  # noqa: F403  (data, batch, iterations, evaluation)

objective = "elbo"
out_dir = "runs/elbo-reduced"
export = "weights/reduced/elbo.safetensors"
# research knobs (experiments/config.py)
anchor_where = True
bound_position = True
elbo_image_blur_px = 2.0
elbo_image_blur_iters = 1000
elbo_blur_px = 1.0
likelihood_scale = 0.1
pres_warmup_iters = 600
pres_anneal_iters = 600
elbo_relax_color_iters = 800
