# weights/reduced/amortised.safetensors: amortised training in the reduced world with the ELBO
# run's data, batch and iterations (data: see elbo_reduced.py).
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
