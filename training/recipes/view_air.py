# The shipped AIR (weights/air.safetensors): a view network trained on photo data, cameras drawn
# from the envelope and looks from the look prior, warm-started from the fixed-camera network.
#   python -m renderer.dataset --photo --count 2000 --seed 101 --out data/photo-val --image-size 80
#   python -m renderer.dataset --photo --count 150000 --seed 1 --out data/photo-train --image-size 80
#   python -m training.train training/recipes/view_air.py          (add --resume=True to continue)
objective = "amortised"
data = "data/photo-train"
val_data = "data/photo-val"
out_dir = "runs/view-air"
warm_start = "weights/fixed-camera/air.safetensors"
max_iters = 16000
warmup_iters = 300
batch_size = 64
eval_interval = 1000
eval_scenes = 500
threads = 1
export = "weights/air.safetensors"
