# Fourth stage (in progress): the shipped weights (view_air_third.py) fine-tuned on photos whose
# key light casts its true shadows in half the images (renderer.photo.cast_shadow), the rest as
# before; chosen on a validation set drawn the same way. Data:
#   python -m renderer.dataset --photo --cast-shadows 0.5 --count 1000 --seed 102 --out data/photo-val-cast --image-size 80
#   python -m renderer.dataset --photo --cast-shadows 0.5 --count 60000 --seed 2 --out data/photo-train-cast --image-size 80
#   python -m training.train training/recipes/view_air_cast.py    (add --resume=True to continue)
objective = "amortised"
data = "data/photo-train-cast"
val_data = "data/photo-val-cast"
out_dir = "runs/view-air-cast"
warm_start = "weights/air.safetensors"
max_iters = 6000
lr = 0.00015
min_lr = 0.00001
warmup_iters = 200
batch_size = 64
eval_interval = 500
eval_scenes = 1000
threads = 1
export = "weights/candidates/view-air-cast.safetensors"
