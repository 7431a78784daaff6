"""magicpose's ComfyUI nodes, written by `magicpose comfyui install`: the nodes live in the installed magicpose package."""

from magicpose_cli.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
