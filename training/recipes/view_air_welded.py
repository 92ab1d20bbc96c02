# Eighth stage: the shipped seventh-stage weights trained on images whose meshes may be shaded as a
# mesh tool shades them by default, every edge soft (LookPrior.welded_probability: vertex normals
# averaged over all faces at a point, so a cube shades like a rounded blob, a cylinder's rims
# and a cone's base rim rounded, as trimesh, Open3D, pyrender or Blender's "shade smooth" draw
# them), with half the rest of the smooth images' cones dome-topped. Data:
#   python -m renderer.dataset --photo --cast-shadows 0.5 --harsh 0.3 --colour 0.4 --apex 0.5 --welded 0.5 \
#       --count 12000 --seed 8 --out data/photo-train-welded --image-size 80
#   python -m renderer.dataset --photo --cast-shadows 0.5 --harsh 0.3 --colour 0.4 --welded 1 --count 600 \
#       --seed 107 --out data/photo-val-welded-only --image-size 80
# Checkpoints picked on data/photo-val-welded-only (every smooth image's meshes so shaded).
#   python -m training.train training/recipes/view_air_welded.py    (add --resume=True to continue)
from training.recipes.view_air_apex import *  # noqa: F403

data = "data/photo-train-welded"
val_data = "data/photo-val-welded-only"
out_dir = "runs/view-air-welded"
max_iters = 3000
export = "weights/candidates/view-air-welded.safetensors"
