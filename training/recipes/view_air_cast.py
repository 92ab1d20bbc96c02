# Fourth stage (2026-11-27): the third stage's weights fine-tuned on photos whose key light
# casts its true shadows in half the images (renderer.photo.cast_shadow), the rest as before;
# the checkpoint rule on a validation set drawn the same way picked iteration 1500. The run was
# stopped after its evaluation at 2000 (the session's time) and exported from best.pt with
# --resume=True --max_iters=2000. What ships is the mean of these weights and the third stage's
# (python -m training.soup, alpha 0.5): see the model card. Data:
#   python -m renderer.dataset --photo --cast-shadows 0.5 --count 1000 --seed 102 --out data/photo-val-cast --image-size 80
#   python -m renderer.dataset --photo --cast-shadows 0.5 --count 60000 --seed 2 --out data/photo-train-cast --image-size 80
#   python -m training.train training/recipes/view_air_cast.py    (add --resume=True to continue)
# (the run read the training set while it was being written: fewer than 19 000 of its scenes existed by then)
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
