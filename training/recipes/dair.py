# weights/dair.safetensors: difference AIR with AIR's data and budget, its teacher-forced
# residuals read from canvases rendered once with pose jitter:
#   python -m training.dair_canvas --data=data/train --out=data/train-canvas-j25 --jitter_cm=0.25 --jitter_deg=2
#   python -m training.train training/recipes/dair.py
objective = "amortised"
dair = True
dair_canvas = "data/train-canvas-j25"
data = "data/train"
val_data = "data/val"
out_dir = "runs/dair"
batch_size = 64
max_iters = 12000
eval_interval = 1000
eval_scenes = 500
threads = 1
export = "weights/dair.safetensors"
