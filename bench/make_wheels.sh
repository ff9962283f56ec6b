#!/usr/bin/env bash
# Wheels the GPU image lacks, for its Python 3.12:
#   bash bench/make_wheels.sh          # wheels/: diffusers, zarr, tomli-w, imageio-ffmpeg and their needs (the
#                                      #   image has torch, transformers, einops, rich, typer, imageio, matplotlib,
#                                      #   pillow; not the ffmpeg that imageio-ffmpeg brings)
#   bash bench/make_wheels.sh flash4   # .flash4/a and .flash4/b: all of wheels/ plus FlashAttention-4 and CuTe DSL
#                                      #   (--attention flash4), in two loads of one device call each
# CuTe DSL's compiler wheel (88 MiB; 61 MiB as an xz tarball of its files) is over what one device call carries
# (64 MiB with the tree), so it travels in two pieces, each with a share of the other wheels:
# `bash bench/run_gpu.sh flash4-stage` (carry .flash4/a) installs a's wheels and keeps the first piece;
# `bash bench/run_gpu.sh flash4-install ...` (carry .flash4/b), on the same warm machine, joins the pieces,
# unpacks CuTe DSL into .flash4_site and installs the rest: later steps of that call, and later calls of that
# machine, run everything without carrying wheels/.
set -euo pipefail
cd "$(dirname "$0")/.."
download() {
  pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 "$@"
}
case ${1:-base} in
  base)
    mkdir -p wheels
    download -d wheels diffusers==0.42.1 zarr==3.1.6 tomli-w numcodecs donfig google-crc32c importlib_metadata imageio-ffmpeg==0.6.0 ;;
  flash4)
    dsl=4.8.1 cuda=${FLASH4_CUDA:-cu13}  # the image's torch is built for CUDA 13
    [ -d wheels ] || bash "$0" base
    rm -rf .flash4 && mkdir -p .flash4/a .flash4/b .flash4/dl/files
    download -d .flash4/b flash-attn-4==4.0.0b40 quack-kernels==0.6.5 apache-tvm-ffi==0.1.15.post2 \
      torch-c-dlpack-ext==0.1.5 nvidia-cutlass-dsl==$dsl nvidia-cutlass-dsl-libs-base==$dsl nvidia-cutlass-dsl-libs-core==$dsl
    download -d .flash4/dl nvidia-cutlass-dsl-libs-$cuda==$dsl
    (cd .flash4/dl/files && unzip -q ../*.whl && tar -cf - . | xz -9 -T0 > ../cutlass-dsl-libs.tar.xz)
    sha256sum .flash4/dl/cutlass-dsl-libs.tar.xz | cut -d' ' -f1 > .flash4/b/cutlass-dsl-libs.sha256
    split -b 50M -d .flash4/dl/cutlass-dsl-libs.tar.xz .flash4/dl/part.
    mv .flash4/dl/part.00 .flash4/a/ && mv .flash4/dl/part.* .flash4/b/ && rm -rf .flash4/dl
    cp wheels/imageio_ffmpeg-*.whl .flash4/b/  # the larger base wheel goes with the smaller piece
    find wheels -name '*.whl' ! -name 'imageio_ffmpeg-*' -exec cp {} .flash4/a/ \;
    du -sh .flash4/a .flash4/b ;;
  *) echo "usage: $0 [base|flash4]" >&2; exit 2 ;;
esac
