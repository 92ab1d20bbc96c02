# The ELBO alone, from scratch, in the reduced world (issue 13 part 2): recipe G
# (elbo_enumerated.py) with two changes, both from measurements in the model card:
# - the soft renderer keeps 16 faces per pixel in the likelihood, not 6 (at 32x32 the small
#   facets of a sphere or cone nearer the camera crowd the face that covers a pixel out of the
#   six kept, and the object shows the table through it);
# - once the edges are sharp (iteration 1500), each shape's entry in the local expectation is its
#   best likelihood over a 3 x 3 grid of places 1.5 cm apart around q's place (a profile
#   likelihood): all shapes compared at one place favour the shape whose place q learned.
#   python -m training.train training/recipes/elbo_profile.py --seed=S --out_dir=runs/elbo-profile-sS \
#       --export=runs/elbo-profile-sS/export.safetensors
from training.recipes.elbo_enumerated import *  # noqa: F403

out_dir = "runs/elbo-profile"
export = "weights/reduced/elbo-profile.safetensors"
elbo_faces_per_pixel = 16
elbo_profile = "-1.5:-1.5,-1.5:0,-1.5:1.5,0:-1.5,0:1.5,1.5:-1.5,1.5:0,1.5:1.5"
elbo_profile_iters = 1500
