"""The research knobs: ``TrainConfig`` extended with the settings of the experiments.

``python -m training.train`` reads this config, so every knob below is a ``--key=value`` flag
too; the product's recipe (``training/recipes/air.py``) sets none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from renderer.render import SOFT_FACES_PER_PIXEL
from training.config import TrainConfig, setting


@dataclass
class ResearchConfig(TrainConfig):
    """``TrainConfig`` plus the knobs of the ELBO, the anchored network, the supervised
    counterpart and the generalisation study."""

    # --- ELBO (training/elbo.py) ---
    likelihood_scale: float = setting(0.1, "ELBO: std of the Gaussian pixel likelihood (pixels in [0, 1])")
    baseline_lr: float = setting(3e-3, "ELBO: learning rate of the NVIL baseline (larger than the model's)")
    pres_prior_start: float = setting(0.99, "ELBO: presence prior p(z_pres = 1) at the start of its annealing")
    pres_anneal_iters: int = setting(2000, "ELBO: steps over which the presence prior anneals to its end value")
    pres_prior_end: float = setting(0.0, "ELBO: > 0: anneal to this p(z_pres = 1) per step (AIR's sparsity prior) "
                                         "instead of the truncated-uniform count prior")
    pres_warmup_iters: int = setting(0, "ELBO: first steps with every step forced present (presence not trained)")
    elbo_blur_px: float = setting(0.5, "ELBO: soft-renderer edge blur in the likelihood, px (wider: longer-range "
                                       "position gradients)")
    elbo_blur_end_px: float = setting(-1.0, "ELBO: >= 0: the edge blur anneals linearly to this, px (a 1 px blur "
                                            "makes a cone and a sphere look alike at 32x32) ...")
    elbo_blur_anneal_iters: int = setting(1500, "ELBO: ... over these steps")
    elbo_image_blur_px: float = setting(0.0, "ELBO: Gaussian blur of image and rendering at the start, px ...")
    elbo_image_blur_iters: int = setting(1000, "ELBO: ... annealed linearly to none over these steps")
    elbo_relax_color_iters: int = setting(0, "ELBO: first steps render the q-mean colour instead of drawing one")
    elbo_samples: int = setting(1, "ELBO: samples of q per image")
    elbo_enumerate: bool = setting(False, "ELBO: sum the count out exactly and take local expectations for shape "
                                          "and colour (training.elbo.enumerated_elbo) instead of NVIL")
    elbo_draw_at_least_one: bool = setting(False, "ELBO with elbo_enumerate: the pathwise and local gradients are taken "
                                                   "at a count drawn from q(c | c >= 1) (against z_pres collapse)")
    elbo_explore: float = setting(0.0, "ELBO with elbo_draw_at_least_one: share of the draws of c* made uniformly over "
                                       "1..N, so that every step keeps learning")
    elbo_local_rms: bool = setting(True, "ELBO with elbo_enumerate: divide the local expectations' signal by its "
                                          "running RMS (False: the ELBO's own gradient, in nats like the poses')")
    elbo_local_rms_iters: int = setting(-1, "ELBO with elbo_local_rms: >= 0: from this step the RMS scale anneals "
                                            "geometrically to 1 (the ELBO's own gradient)")
    elbo_local_anneal_iters: int = setting(500, "ELBO: steps of that anneal")
    elbo_fit_places: bool = setting(False, "ELBO with shape_positions: every shape's place learns where that shape "
                                           "would best explain the image, drawn or not (a profile likelihood)")
    elbo_profile: str = setting("", "ELBO with elbo_enumerate: table-plane offsets in cm, 'dx:dy,dx:dy,...': each "
                                    "shape's local-expectation entry is its best likelihood over its place and the "
                                    "place moved by each (a profile likelihood; empty: the ELBO's own entries)")
    elbo_profile_iters: int = setting(0, "ELBO with elbo_profile: the profile from this step on")
    elbo_self_label: float = setting(0.0, "ELBO with elbo_enumerate: > 0: each drawn step's shape and colour also "
                                          "learn log q(best value) at this weight, the value whose rendering the "
                                          "likelihood likes best (a hard-EM step, no label read)")
    elbo_self_label_iters: int = setting(0, "ELBO with elbo_self_label: from this step on")
    elbo_faces_per_pixel: int = setting(SOFT_FACES_PER_PIXEL, "ELBO: faces the soft renderer keeps per pixel in the likelihood (6 hides "
                                           "the covering face behind nearer small facets at 32x32: see the model card)")
    elbo_faces_per_pixel_from: int = setting(0, "ELBO: elbo_faces_per_pixel from this step on, 6 (the renderer's default) before (16 from the "
                                                "start, at the early 1 px edge, kept the count from being learned)")
    shape_positions: bool = setting(False, "each shape its own mean position (AIRConfig.shape_positions): the "
                                           "ELBO compares shapes each at its own place")
    pres_warmup_first: bool = setting(False, "ELBO with elbo_enumerate: the warm-up forces only the first step "
                                             "present (n >= 1); later steps' presence is trained from the start")
    # --- the anchored network (experiments/anchored.py) ---
    anchor_where: bool = setting(False, "AIR: position = the table point under the attention centroid + an offset "
                                        "of at most 5 cm (experiments.anchored)")
    bound_position: bool = setting(False, "AIR with anchor_where: squash the mean position into the placement square")
    # --- the supervised counterpart (experiments/supervised.py) ---
    slot_attention: bool = setting(True, "supervised: each slot reads the image by its own attention "
                                         "(SupervisedConfig.slot_attention)")
    # --- weight averaging (training/train.py) ---
    average_from: int = setting(0, "> 0: from this iteration on, keep a running mean of the model's weights, one "
                                   "snapshot every average_every steps (stochastic weight averaging); validation, "
                                   "export and experiments.elbo_seeds use the mean")
    average_every: int = setting(10, "steps between the snapshots of the running weight mean")
    # --- the generalisation study (bench/generalise.py) ---
    counts: str = setting("", "train and validate only on scenes with these object counts, e.g. 0,1,2 (empty: all)")
