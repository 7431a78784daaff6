"""`magicpose ui`: a local web app (Gradio) that runs retarget, for people who would rather not use a terminal.

``settings`` is the table of options the page offers, ``jobs`` the work behind it (free of
Gradio), ``page`` the Gradio Blocks, ``server`` serving it on this machine only. Gradio is the
optional extra ``magicpose-cli[ui]``; nothing here imports it until the app starts.
"""
