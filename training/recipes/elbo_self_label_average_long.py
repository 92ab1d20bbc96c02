# Recipe N (issue 13 part 2): recipe M's constant 1e-4 500 iterations longer (7000 -> 7500),
# the running weight mean still taking a snapshot every 10 steps from 6500, so that it spans
# 1000 steps (100 snapshots) instead of 500. M's mean ended at 93.1 / 89.9 / 92.1 / 87.1 / 90.9%
# held-out shape (seeds 0-4; L's last iterates 94.3 / 90.3 / 89.5 / 86.9 / 90.7%): the middle of a
# wider stretch of the path. It resumes M's 7000-iteration checkpoint:
#   python -m training.train training/recipes/elbo_self_label_average_long.py --seed=S \
#       --out_dir=runs/elbo-self-label-avg-long-sS --resume=True \
#       --export=runs/elbo-self-label-avg-long-sS/export.safetensors
from training.recipes.elbo_self_label_average import *  # noqa: F403

out_dir = "runs/elbo-self-label-avg-long"
export = "weights/reduced/elbo-self-label-avg-long.safetensors"
max_iters = 7500
schedule_from = 7000
