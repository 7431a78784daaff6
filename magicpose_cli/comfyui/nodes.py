"""The nodes ComfyUI sees: their inputs, outputs and categories, in ComfyUI's node conventions.

ComfyUI imports every node pack when it starts, so this module imports nothing heavy: each node's
function imports the work (magicpose_cli.comfyui.work, which runs `retarget`'s own steps) when it
runs. The choices offered here are the values of the library's enums, which the tests compare.
"""

from __future__ import annotations

CATEGORY = "MagicPose"
MODEL_TYPE = "MAGICPOSE_MODEL"
POSES_TYPE = "MAGICPOSE_POSES"
DEVICES = ["auto", "cuda", "mps", "cpu"]  # models.loading.Device
PRECISIONS = ["auto", "fp16", "bf16", "fp32"]  # models.loading.Precision
SCHEDULERS = ["auto", "ddim", "dpm", "dpm-karras", "dpm-1", "unipc", "lcm", "tcd"]  # auto: the model's recommendation; models.loading.Scheduler
PRESETS = ["quality", "balanced", "fast"]  # retarget.presets.Preset
DETECTORS = ["auto", "mediapipe", "dwpose", "openpose"]  # pose.detectors.DetectorName
CONTEXT_FUSIONS = ["auto", "pyramid", "flat"]  # auto: the default; models.context_windows.ContextFusion
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes any 64-bit seed


class MagicPoseLoadModel:
    DESCRIPTION = "A MagicPose model (a converted folder, an original checkpoint, a Hugging Face Hub id, or `demo`), loaded once and kept."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("STRING", {"default": "demo", "tooltip": "a model folder, a checkpoint file, a hub id (Boese0601/MagicDance) or demo; empty: $MAGICPOSE_MODEL or the config file's"}),
                "device": (DEVICES, {"default": "auto", "tooltip": "auto: the device ComfyUI runs on"}),
                "dtype": (PRECISIONS, {"default": "auto", "tooltip": "auto: float16 on CUDA, float32 elsewhere"}),
            },
            "optional": {
                "motion_module": ("STRING", {"default": "", "tooltip": "an AnimateDiff motion module (file, folder or hub id); empty: none"}),
            },
        }

    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, model: str, device: str, dtype: str, motion_module: str = ""):
        from magicpose_cli.comfyui.work import load_model

        return (load_model(model, device, dtype, motion_module),)


class PosesNode:
    """What the two nodes that give poses share: the poses, and their maps to preview."""

    RETURN_TYPES = (POSES_TYPE, "IMAGE")
    RETURN_NAMES = ("poses", "pose_maps")
    CATEGORY = CATEGORY


class MagicPoseExtractPoses(PosesNode):
    DESCRIPTION = "The poses of a driving video's frames (from any video loader), fitted to the reference body when one is given."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "the driving video's frames"}),
                "fps": ("FLOAT", {"default": 30.0, "min": 0.1, "max": 240.0, "step": 0.01, "tooltip": "the frames' rate: paces the smoothing"}),
                "face": ("BOOLEAN", {"default": True, "tooltip": "draw the face landmarks"}),
                "hands": ("BOOLEAN", {"default": True, "tooltip": "draw the hands"}),
                "smoothing": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05, "tooltip": "temporal smoothing strength; 0 turns it off"}),
                "detector": (DETECTORS, {"default": "auto"}),
            },
            "optional": {
                "reference": ("IMAGE", {"tooltip": "the reference photo: the skeleton is fitted to its body (as retarget does); without it the poses stay as detected"}),
            },
        }

    FUNCTION = "extract"

    def extract(self, frames, fps: float, face: bool, hands: bool, smoothing: float, detector: str, reference=None):
        from magicpose_cli.comfyui.work import extract_poses

        return extract_poses(frames, fps, face, hands, smoothing, detector, reference)


class MagicPoseLoadPoses(PosesNode):
    DESCRIPTION = "A folder of OpenPose JSON (as extract-pose writes it) or of rendered pose maps: the original MagicPose workflow."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "folder": ("STRING", {"default": "", "tooltip": "a folder of OpenPose JSON files or of pose map images"}),
                "face": ("BOOLEAN", {"default": True, "tooltip": "draw the face landmarks (OpenPose JSON only)"}),
                "hands": ("BOOLEAN", {"default": True, "tooltip": "draw the hands (OpenPose JSON only)"}),
            },
            "optional": {
                "reference": ("IMAGE", {"tooltip": "fit OpenPose JSON skeletons to this photo's body"}),
            },
        }

    FUNCTION = "load"

    def load(self, folder: str, face: bool, hands: bool, reference=None):
        from magicpose_cli.comfyui.work import load_poses

        return load_poses(folder, face, hands, reference)


class MagicPoseRetarget:
    DESCRIPTION = "The reference person performing the poses: frames in the driving video's count and shape, ready for a video-combine node."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE,),
                "reference": ("IMAGE", {"tooltip": "the photo of the person to animate (one image)"}),
                "poses": (POSES_TYPE,),
                "preset": (PRESETS, {"default": "quality", "tooltip": "balanced and fast take a half and a quarter of the steps"}),
                "steps": ("INT", {"default": 0, "min": 0, "max": 1000, "tooltip": "0: the preset's (the model's recommendation)"}),
                "guidance": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 30.0, "step": 0.1, "tooltip": "0: the model's recommendation"}),
                "scheduler": (SCHEDULERS, {"default": "auto"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED}),
                "batch_size": ("INT", {"default": 4, "min": 1, "max": 256, "tooltip": "frames denoised together"}),
                "size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8, "tooltip": "short side of the generation canvas; 0: the model's recommendation, else 512"}),
            },
            "optional": {
                "context_frames": ("INT", {"default": 0, "min": 0, "max": 256, "tooltip": "motion module: frames per context window; 0: the default"}),
                "context_overlap": ("INT", {"default": -1, "min": -1, "max": 255, "tooltip": "motion module: frames windows share; -1: the default"}),
                "context_fusion": (CONTEXT_FUSIONS, {"default": "auto"}),
                "motion_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 4.0, "step": 0.05, "tooltip": "motion module: strength of its temporal attention"}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "retarget"
    CATEGORY = CATEGORY

    def retarget(self, model, reference, poses, preset: str, steps: int, guidance: float, scheduler: str, seed: int, batch_size: int,
                 size: int, context_frames: int = 0, context_overlap: int = -1, context_fusion: str = "auto", motion_scale: float = 1.0):  # fmt: skip
        from magicpose_cli.comfyui.work import NodeSettings, retarget_frames

        settings = NodeSettings(preset, steps, guidance, scheduler, seed, batch_size, size, context_frames, context_overlap, context_fusion, motion_scale)
        return (retarget_frames(model, reference, poses, settings),)


NODE_CLASS_MAPPINGS = {
    "MagicPoseLoadModel": MagicPoseLoadModel,
    "MagicPoseExtractPoses": MagicPoseExtractPoses,
    "MagicPoseLoadPoses": MagicPoseLoadPoses,
    "MagicPoseRetarget": MagicPoseRetarget,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MagicPoseLoadModel": "MagicPose Load Model",
    "MagicPoseExtractPoses": "MagicPose Extract Poses",
    "MagicPoseLoadPoses": "MagicPose Load Poses",
    "MagicPoseRetarget": "MagicPose Retarget",
}
