#!/usr/bin/env bash
# Wheels the GPU image lacks (it has torch, transformers, einops, rich, typer, imageio, matplotlib, pillow; not the ffmpeg that imageio-ffmpeg brings), for Python 3.12.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p wheels
pip download --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  -d wheels diffusers==0.42.1 zarr==3.1.6 tomli-w numcodecs donfig google-crc32c importlib_metadata imageio-ffmpeg==0.6.0
