# The ELBO alone, from scratch, in the reduced world (issue 13 part 2): elbo_shape_places.py plus
# every shape's place fitted whether q draws it or not (model card: with places learned only for
# drawn shapes, q(sphere) fell to zero in three seeds and spheres stayed cones placed 3 cm off).
#   python -m training.train training/recipes/elbo_fit_places.py --seed=S --out_dir=runs/elbo-fit-sS \
#       --export=weights/reduced/elbo-fit-sS.safetensors
from training.recipes.elbo_shape_places import *  # noqa: F403

elbo_fit_places = True
out_dir = "runs/elbo-fit-places"
export = "weights/reduced/elbo-fit-places.safetensors"
