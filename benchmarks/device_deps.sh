#!/usr/bin/env bash
# Copy the pure-Python packages a lent GPU machine lacks into .gpudeps/ (git-ignored), from this venv.
# Its image has torch, timm, typer, rich, scipy, scikit-image and safetensors but not pytorch-grad-cam
# (an sdist on PyPI, so no wheel to carry) or ttach; timm travels too, so its version matches ours.
# The check calls the library directly, not the Typer CLI, so the image's own typer and click do not matter.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf .gpudeps && mkdir -p .gpudeps
for pkg in pytorch_grad_cam ttach timm; do
  cp -r "$SITE/$pkg" .gpudeps/
done
find .gpudeps -name __pycache__ -prune -exec rm -rf {} +
grep -qxF '/.gpudeps/' .git/info/exclude 2>/dev/null || echo '/.gpudeps/' >> .git/info/exclude
du -sh .gpudeps
