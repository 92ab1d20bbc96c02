# Recipe L (issue 13 part 2): recipe K's constant self-label stage run 500 iterations longer
# (3000 -> 5500 at 3e-4), then a cosine decay to 2e-5 over 1000 iterations (5500 -> 6500, in
# elbo_self_label_long_decay.py). K's decay from 5000 settled seed 0 at 93.1% shape, but seed 3's
# validation shape was still climbing at 5000 (65 / 82% at 4000 / 5000) and seeds 1 and 4 ended
# 0.3 / 0.1 points short: L asks whether a longer climb before the decay closes that gap.
# K's first 5000 iterations are this recipe's (the learning rate is constant from 3000), so L
# resumes K's 5000-iteration checkpoint:
#   python -m training.train training/recipes/elbo_self_label_long.py --seed=S \
#       --out_dir=runs/elbo-self-label-long-sS --resume=True --export=runs/elbo-self-label-long-sS/export.safetensors
#   python -m training.train training/recipes/elbo_self_label_long_decay.py --seed=S \
#       --out_dir=runs/elbo-self-label-long-sS --resume=True \
#       --export=runs/elbo-self-label-long-sS/export.safetensors
from training.recipes.elbo_self_label import *  # noqa: F403

out_dir = "runs/elbo-self-label-long"
export = "weights/reduced/elbo-self-label-long.safetensors"
max_iters = 5500
