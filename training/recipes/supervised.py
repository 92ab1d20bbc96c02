# weights/supervised.safetensors: the supervised counterpart (experiments/supervised.py) with
# AIR's data and budget.
#   python -m training.train training/recipes/supervised.py
objective = "supervised"
data = "data/train"
val_data = "data/val"
out_dir = "runs/supervised"
batch_size = 64
max_iters = 12000
eval_interval = 1000
eval_scenes = 500
threads = 1
export = "weights/supervised.safetensors"
