# Seventh stage: the shipped sixth-stage weights trained on where a cone's apex may be shaded as a
# mesh with per-vertex normals shades it (LookPrior.apex_probability: the top of a smooth cone
# like a dome, as Blender draws it), the rest of the world as the sixth stage drew it. Data:
#   python -m renderer.dataset --photo --cast-shadows 0.5 --harsh 0.3 --colour 0.4 --apex 0.5 --count 12000 \
#       --seed 5 --out data/photo-train-apex --image-size 80
#   python -m renderer.dataset --photo --cast-shadows 0.5 --harsh 0.3 --colour 0.4 --apex 1 --count 600 \
#       --seed 106 --out data/photo-val-apex-only --image-size 80
# Checkpoints picked on data/photo-val-apex-only (every smooth image's cones so shaded).
#   python -m training.train training/recipes/view_air_apex.py    (add --resume=True to continue)
objective = "amortised"
data = "data/photo-train-apex"
val_data = "data/photo-val-apex-only"
out_dir = "runs/view-air-apex"
warm_start = "weights/air.safetensors"
max_iters = 1500
lr = 0.0001
min_lr = 0.000005
warmup_iters = 100
batch_size = 64
eval_interval = 500
eval_scenes = 600
threads = 2
export = "weights/candidates/view-air-apex.safetensors"
