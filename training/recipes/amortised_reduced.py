# weights/reduced/amortised.safetensors: amortised training in the reduced world (N = 2,
# cube/sphere/cone, red/green/blue, 32x32); elbo_reduced.py trains the ELBO with the same budget.
#   python -m renderer.dataset --count 30000 --seed 20 --out data/elbo-train --max-objects 2 --image-size 32 \
#       --shapes cube,sphere,cone --colors red,green,blue
#   python -m renderer.dataset --count 1000 --seed 21 --out data/elbo-val --max-objects 2 --image-size 32 \
#       --shapes cube,sphere,cone --colors red,green,blue
#   python -m training.train training/recipes/amortised_reduced.py
# The longer run (weights/reduced/amortised-long.safetensors):
#   python -m training.train training/recipes/amortised_reduced.py --max_iters=15000 --log_interval=100 \
#       --eval_interval=500 --out_dir=runs/amortised-reduced-long --export=weights/reduced/amortised-long.safetensors
objective = "amortised"
data = "data/elbo-train"
val_data = "data/elbo-val"
out_dir = "runs/amortised-reduced"
batch_size = 16
max_iters = 3000
lr = 1e-3
warmup_iters = 50
log_interval = 25
eval_interval = 100
eval_scenes = 300
threads = 1
export = "weights/reduced/amortised.safetensors"
