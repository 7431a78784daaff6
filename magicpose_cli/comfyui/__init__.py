"""magicpose as a ComfyUI node pack: load a model, extract or load poses, retarget (docs/comfyui.md).

ComfyUI reads ``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS`` from the folder that
`magicpose comfyui install` writes into its custom_nodes. Importing this package needs neither
ComfyUI nor torch: the nodes import the work when they run.
"""

from magicpose_cli.comfyui.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
