"""Restoration quality metrics, each equal to the field's reference code (BasicSR PSNR/SSIM/NIQE, LPIPS v0.1,
pytorch-fid), plus face scores (ArcFace identity, 3DDFA landmarks and shape). ``evaluate`` runs them over
folders for ``facerest eval``. Nothing heavy is imported here; each module imports torch/cv2 inside functions.
"""
