# Recipe L's last stage (issue 13 part 2): after elbo_self_label_long.py's constant climb to 5500,
# the learning rate falls by a cosine from 3e-4 to 2e-5 over 1000 iterations, as in K's decay.
from training.recipes.elbo_self_label_long import *  # noqa: F403

export = "weights/reduced/elbo-self-label-long-decay.safetensors"
max_iters = 6500
schedule_from = 5500
min_lr = 0.00002
