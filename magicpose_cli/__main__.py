from magicpose_cli.cli import app

app(prog_name="magicpose")
