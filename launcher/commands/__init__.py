"""CLI sub-commands, one module each; ``launcher.cli`` discovers them. See launcher/cli.py."""
