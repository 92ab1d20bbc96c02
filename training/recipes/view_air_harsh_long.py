# Fifth stage, second run: view_air_harsh.py's export (its last evaluation, iteration 2500, where
# validation shape was still rising as the rate decayed) trained on at a lower peak rate, on the
# same data (by then most of its 40 000 scenes were written). Checkpoints picked on
# data/photo-val-harsh, drawn as the training set. See view_air_harsh.py for the data commands.
#   python -m training.train training/recipes/view_air_harsh_long.py    (add --resume=True to continue)
objective = "amortised"
data = "data/photo-train-harsh"
val_data = "data/photo-val-harsh"
out_dir = "runs/view-air-harsh-long"
warm_start = "weights/candidates/view-air-harsh.safetensors"
max_iters = 3500
lr = 0.0001
min_lr = 0.000005
warmup_iters = 100
batch_size = 64
eval_interval = 500
eval_scenes = 1000
threads = 1
export = "weights/candidates/view-air-harsh-long.safetensors"
