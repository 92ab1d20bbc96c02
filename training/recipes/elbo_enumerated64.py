# Issue 13 part 2, the lever after recipes H and I: recipe G (elbo_enumerated.py) with the
# likelihood at 64x64 instead of 32x32 (at 32x32 a cone 2.7 cm off mimics a sphere 0.9 cm off;
# model card). The blurs that widen the early basin keep their physical size (twice the pixels);
# the final edge blur stays at 0.25 px, half of G's in physical size.
#   python -m renderer.dataset --count 10000 --seed 40 --out data/elbo-train64 --max-objects 2 --image-size 64 \
#       --shapes cube,sphere,cone --colors red,green,blue
#   python -m renderer.dataset --count 1000 --seed 41 --out data/elbo-val64 --max-objects 2 --image-size 64 \
#       --shapes cube,sphere,cone --colors red,green,blue
#   python -m training.train training/recipes/elbo_enumerated64.py --seed=S --out_dir=runs/elbo-g64-sS \
#       --export=weights/reduced/elbo-g64-sS.safetensors          (add --resume=True to go on)
from training.recipes.elbo_enumerated import *  # noqa: F403

data = "data/elbo-train64"
val_data = "data/elbo-val64"
out_dir = "runs/elbo-g64"
export = "weights/reduced/elbo-g64.safetensors"
elbo_image_blur_px = 4.0
elbo_blur_px = 2.0
