# Second stage of the shipped AIR: the view network of view_air.py trained on for longer at a
# lower peak rate (its validation shape accuracy still rose every 1000 steps when it stopped).
#   python -m training.train training/recipes/view_air.py          (first stage, writes weights/air.safetensors)
#   python -m training.train training/recipes/view_air_long.py     (add --resume=True to continue)
objective = "amortised"
data = "data/photo-train"
val_data = "data/photo-val"
out_dir = "runs/view-air-long"
warm_start = "weights/air.safetensors"
max_iters = 11000
lr = 0.0005
warmup_iters = 200
batch_size = 64
eval_interval = 1000
eval_scenes = 1000
threads = 1
export = "weights/air.safetensors"
