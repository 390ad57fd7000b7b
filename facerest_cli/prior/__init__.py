"""The 3D face prior: 3DMM pose and shape, rendered geometry, pose-adaptive strength, shape consistency.

Modules (none is imported by ``import facerest_cli``; torch and cv2 load only when one is used):

* ``tddfa``      -- 3DDFA_V2 MobileNetV1 regressors: face box -> 62 parameters -> pose, 68 landmarks, meshes
* ``morphable``  -- the sparse 68-landmark BFM and the dense no-neck BFM (full model or the mean face)
* ``pose``       -- camera -> yaw/pitch/roll, and the pose-adaptive strength curve
* ``render``     -- renderer protocol; the built-in torch rasterizer; the optional pytorch3d backend
* ``d3dfr``, ``bfm09``, ``sgpn`` -- Deep3DFaceRecon coefficients and the SGPN restorer's rendered prior
* ``stage``      -- ``PriorStage``, the pipeline ``BatchStage``
* ``analyze``    -- ``facerest prior IMAGE``: per-face report and the overlay render

Shape-consistency threshold (``PriorConfig.shape_threshold``, default 0.1): the distance is the RMS over the 40
shape coefficients of (input - restored), in population standard deviations (3DDFA's parameter statistics).
Measured with mb05 on 77 faces (YuNet score > 0.7) of ../shared/images/deepface and gfpgan/whole_imgs, aligned to
the 512 FFHQ crop: the same crop after JPEG q30, Gaussian blur (sigma 1.5) or 2x down-up sampling scored a median
0.018, p95 0.044, max 0.095; crops of two different photos (mostly different people) a median 0.32, p5 0.13.
A restoration above 0.1 changed the face's 3D shape more than any of those degradations did.
"""
