# The fixed-camera AIR (weights/fixed-camera/air.safetensors, shipped until stage 2): amortised training on 100k prior scenes.
#   python -m renderer.dataset --count 100000 --seed 0 --out data/train
#   python -m renderer.dataset --count 2000 --seed 1 --out data/val
#   python -m training.train training/recipes/air.py
objective = "amortised"
data = "data/train"
val_data = "data/val"
out_dir = "runs/air"
max_iters = 12000
eval_interval = 1000
eval_scenes = 500
export = "weights/fixed-camera/air.safetensors"
