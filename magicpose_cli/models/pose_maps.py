"""Pose maps in any usual form as the ControlNet's input: an Nx3xHxW float tensor in [0,1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import PIL.Image
import torch


class PoseMapProcessor:
    """Pose maps in any usual form as an Nx3xHxW float tensor in [0,1], the ControlNet's input range.

    The type decides the scale, never the values: uint8 arrays, uint8 tensors and PIL images are
    divided by 255; float arrays (HxWx3) and float tensors (3xHxW) are taken as already in [0,1].
    """

    @staticmethod
    def frames(pose_maps) -> Sequence:
        """Any pose-map input as a sequence of single maps; a 4-D tensor or array is split by indexing."""
        if isinstance(pose_maps, PIL.Image.Image) or (isinstance(pose_maps, (torch.Tensor, np.ndarray)) and pose_maps.ndim == 3):
            return [pose_maps]
        return pose_maps

    @staticmethod
    def to_tensor(pose_map) -> torch.Tensor:
        """One map as a 3xHxW float tensor in [0,1]."""
        if isinstance(pose_map, PIL.Image.Image):
            pose_map = np.asarray(pose_map.convert("RGB"))
        if isinstance(pose_map, np.ndarray):
            if pose_map.ndim != 3 or pose_map.shape[-1] != 3:
                raise ValueError(f"pose maps must be N x 3 x H x W tensors or H x W x 3 arrays, got an array of {pose_map.shape}")
            pose_map = torch.from_numpy(np.array(pose_map)).permute(2, 0, 1)  # a copy: PIL's arrays are read-only
        if not isinstance(pose_map, torch.Tensor):
            raise TypeError(f"a pose map must be an array, a PIL image or a tensor, got {type(pose_map).__name__}")
        if pose_map.ndim != 3 or pose_map.shape[0] != 3:
            raise ValueError(f"pose maps must be N x 3 x H x W (N >= 1), got a map of {tuple(pose_map.shape)}")
        return pose_map.float() / 255.0 if pose_map.dtype == torch.uint8 else pose_map.float()

    def preprocess(self, pose_maps: Sequence) -> torch.Tensor:
        """Maps of one size stacked as Nx3xHxW."""
        tensors = [self.to_tensor(pose_map) for pose_map in pose_maps]
        if any(tensor.shape != tensors[0].shape for tensor in tensors):
            raise ValueError("all pose maps must have the same size")
        return torch.stack(tensors)
