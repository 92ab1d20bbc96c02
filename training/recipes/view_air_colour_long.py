# Sixth stage, second run: view_air_colour.py's export trained on at a lower peak rate, now that
# all 24 000 scenes of the training set are written (the first run read it while it was being
# rendered). Checkpoints picked on data/photo-val-colour, drawn as the training set. See
# view_air_colour.py for the data commands.
#   python -m training.train training/recipes/view_air_colour_long.py    (add --resume=True to continue)
objective = "amortised"
data = "data/photo-train-colour"
val_data = "data/photo-val-colour"
out_dir = "runs/view-air-colour-long"
warm_start = "weights/candidates/view-air-colour.safetensors"
max_iters = 2500
lr = 0.0001
min_lr = 0.000005
warmup_iters = 100
batch_size = 64
eval_interval = 500
eval_scenes = 1000
threads = 1
export = "weights/candidates/view-air-colour-long.safetensors"
