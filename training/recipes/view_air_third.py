# Third stage of the shipped AIR: the second stage's weights (view_air_long.py) trained on over
# the whole 150 000-scene photo set at a lower peak rate (validation shape still rose at 9000).
#   python -m training.train training/recipes/view_air_third.py    (add --resume=True to continue)
objective = "amortised"
data = "data/photo-train"
val_data = "data/photo-val"
out_dir = "runs/view-air-third"
warm_start = "weights/air.safetensors"
max_iters = 4500
lr = 0.00025
min_lr = 0.00001
warmup_iters = 200
batch_size = 64
eval_interval = 1000
eval_scenes = 1000
threads = 1
export = "weights/candidates/view-air-third.safetensors"
