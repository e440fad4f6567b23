"""Faces in photos: detection and the FFHQ alignment, so that any photo can be inpainted.

  mtcnn.py   MTCNN (PNet, RNet, ONet and their cascade) as facenet-pytorch runs it: boxes,
             scores and five landmarks per face
  align.py   the FFHQ crop from five landmarks, the warp of image and mask into it, and the
             paste-back of completions into the photo's hole
"""
