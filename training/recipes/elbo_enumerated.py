# The ELBO alone, from scratch, in the reduced world (issue 13 part 2), with the enumerated
# estimator (training.elbo.enumerated_elbo): the count summed out exactly, local expectations for
# shape and colour, poses reparameterised; no score function. Otherwise elbo_reduced.py's recipe.
#   python -m training.train training/recipes/elbo_enumerated.py --seed=S --out_dir=runs/elbo-enum-sS
from training.recipes.elbo_reduced import *  # noqa: F403  (data, batch, budget, the anchored network)

elbo_enumerate = True
out_dir = "runs/elbo-enumerated"
export = "weights/reduced/elbo-enumerated.safetensors"  # best.pt; bench.elbo_seeds scores the last iterate
