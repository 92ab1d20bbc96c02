# Seventh stage, second try: as view_air_apex.py, but every smooth-shaded training image draws its
# cones' apex as a mesh with per-vertex normals shades it, and twice the iterations. Data:
#   python -m renderer.dataset --photo --cast-shadows 0.5 --harsh 0.3 --colour 0.4 --apex 1 --count 12000 \
#       --seed 7 --out data/photo-train-apex-all --image-size 80
# Checkpoints picked on data/photo-val-apex-only (view_air_apex.py's validation set).
#   python -m training.train training/recipes/view_air_apex_all.py    (add --resume=True to continue)
objective = "amortised"
data = "data/photo-train-apex-all"
val_data = "data/photo-val-apex-only"
out_dir = "runs/view-air-apex-all"
warm_start = "weights/air.safetensors"
max_iters = 3000
lr = 0.0001
min_lr = 0.000005
warmup_iters = 100
batch_size = 64
eval_interval = 500
eval_scenes = 600
threads = 2
export = "weights/candidates/view-air-apex-all.safetensors"
