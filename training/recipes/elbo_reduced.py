# weights/reduced/elbo.safetensors: the ELBO alone, from scratch, in the reduced world (N = 2,
# cube/sphere/cone, red/green/blue, 32x32):
#   python -m renderer.dataset --count 30000 --seed 20 --out data/elbo-train --max-objects 2 --image-size 32 \
#       --shapes cube,sphere,cone --colors red,green,blue
#   python -m renderer.dataset --count 1000 --seed 21 --out data/elbo-val --max-objects 2 --image-size 32 \
#       --shapes cube,sphere,cone --colors red,green,blue
#   python -m training.train training/recipes/elbo_reduced.py
objective = "elbo"
data = "data/elbo-train"
val_data = "data/elbo-val"
out_dir = "runs/elbo-reduced"
batch_size = 16
max_iters = 3000
lr = 1e-3
warmup_iters = 50
log_interval = 25
eval_interval = 100
eval_scenes = 300
threads = 1
export = "weights/reduced/elbo.safetensors"
# research knobs (experiments/config.py)
anchor_where = True
bound_position = True
elbo_image_blur_px = 2.0
elbo_image_blur_iters = 1000
elbo_blur_px = 1.0
likelihood_scale = 0.1
pres_warmup_iters = 600
pres_anneal_iters = 600
elbo_relax_color_iters = 800
