# Seventh stage, second try: as view_air_apex.py, but every smooth-shaded training image draws its
# cones' apex as a mesh with per-vertex normals shades it, and twice the iterations. Data:
#   python -m renderer.dataset --photo --cast-shadows 0.5 --harsh 0.3 --colour 0.4 --apex 1 --count 12000 \
#       --seed 7 --out data/photo-train-apex-all --image-size 80
# Checkpoints picked on data/photo-val-apex-only (view_air_apex.py's validation set).
#   python -m training.train training/recipes/view_air_apex_all.py    (add --resume=True to continue)
from training.recipes.view_air_apex import *  # noqa: F403

data = "data/photo-train-apex-all"
out_dir = "runs/view-air-apex-all"
max_iters = 3000
export = "weights/candidates/view-air-apex-all.safetensors"
