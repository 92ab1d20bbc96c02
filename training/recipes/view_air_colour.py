# Sixth stage (2026-11-27): the shipped weights (the fifth stage) fine-tuned on photos where,
# besides the fifth stage's cast shadows and harsh sensor, four images in ten come from a camera
# rendering colour off its calibration: white balance off warm-cool and green-magenta, another
# tone curve, saturation scaled, veiling glare (LookPrior.colour_probability). bench.camera_effects
# showed a warm or cool white balance and washed-out colour as what the network read worst
# (count 85-92%, colour down to 81%). Checkpoints are picked on a validation set drawn the same way.
# Data:
#   python -m renderer.dataset --photo --cast-shadows 0.5 --harsh 0.3 --colour 0.4 --count 1000 --seed 104 --out data/photo-val-colour --image-size 80
#   python -m renderer.dataset --photo --cast-shadows 0.5 --harsh 0.3 --colour 1.0 --count 600 --seed 105 --out data/photo-val-colour-only --image-size 80
#   python -m renderer.dataset --photo --cast-shadows 0.5 --harsh 0.3 --colour 0.4 --count 24000 --seed 4 --out data/photo-train-colour --image-size 80
#   python -m training.train training/recipes/view_air_colour.py    (add --resume=True to continue)
objective = "amortised"
data = "data/photo-train-colour"
val_data = "data/photo-val-colour"
out_dir = "runs/view-air-colour"
warm_start = "weights/air.safetensors"
max_iters = 3000
lr = 0.00015
min_lr = 0.00001
warmup_iters = 200
batch_size = 64
eval_interval = 500
eval_scenes = 1000
threads = 1
export = "weights/candidates/view-air-colour.safetensors"
