# The ELBO alone, from scratch, in the reduced world (issue 13 part 2): recipe G
# (elbo_enumerated.py) with three changes, each from measurements in the model card:
# - once the edges are sharp (iteration 1500), the soft renderer keeps 16 faces per pixel in the
#   likelihood, not 6 (at 32x32 the small facets of a sphere or cone nearer the camera crowd the
#   face that covers a pixel out of the six kept, and the object shows the table through it;
#   16 from the start, at the early 1 px edge, kept the count from being learned: 40% and 32%
#   at iteration 1600 in seeds 0 and 1, where G had learned it);
# - from then on too, each shape's entry in the local expectation is its best likelihood over
#   a 3 x 3 grid of places 1.5 cm apart around q's place (a profile likelihood): all shapes
#   compared at one place favour the shape whose place q learned;
# - from iteration 1800 the local signal's RMS scale anneals to 1 over 300 iterations (recipe H's
#   anneal: at scale ~55 the KL's entropy bonus keeps q(shape) soft whatever the signal says;
#   the first runs, seeds 0 and 1, ran 1500-1800 without it, shape 43-57%, and were resumed at
#   1800 with it).
#   python -m training.train training/recipes/elbo_profile.py --seed=S --out_dir=runs/elbo-profile-sS \
#       --export=runs/elbo-profile-sS/export.safetensors
from training.recipes.elbo_enumerated import *  # noqa: F403

out_dir = "runs/elbo-profile"
export = "weights/reduced/elbo-profile.safetensors"
elbo_faces_per_pixel = 16
elbo_faces_per_pixel_from = 1500
elbo_profile = "-1.5:-1.5,-1.5:0,-1.5:1.5,0:-1.5,0:1.5,1.5:-1.5,1.5:0,1.5:1.5"
elbo_profile_iters = 1500
elbo_local_rms_iters = 1800
elbo_local_anneal_iters = 300
