"""Turn a tensor file of images into an image folder a run can use (``data.dataset=imagefolder``).

Written for files such as PRECODE's ``128CIF_RECDATA.dict`` (a ``torch.save``d dict of
normalised ``images`` ``[N, 3, H, W]`` and ``labels`` ``[N]``), but any such file works: give
the normalisation's mean and std (per channel), or 0 and 1 for images already in [0, 1].

    python -m fl_sim.data.convert FILE OUT_DIR [--mean M M M] [--std S S S]

Each image becomes ``OUT_DIR/<label>/<index>.png``, 8 bits per channel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image

#: The CIFAR-10 normalisation of PRECODE's notebook (its README's constants).
CIFAR10_MEAN = (0.4914672374725342, 0.4822617471218109, 0.4467701315879822)
CIFAR10_STD = (0.24703224003314972, 0.24348513782024384, 0.26158785820007324)


def load_tensor_images(path: Path, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> tuple[torch.Tensor, torch.Tensor]:
    """Images de-normalised to [0, 1] ``[N, C, H, W]`` and int64 labels from a ``torch.save``d dict."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    images = data["images"].float()
    shape = (1, images.shape[1], 1, 1)
    images = images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    return images.clamp(0, 1), data["labels"].long()


def write_image_folder(images: torch.Tensor, labels: torch.Tensor, out: Path) -> int:
    """Write ``images`` in [0, 1] as PNGs, one sub-folder per label; return how many were written."""
    for index, (image, label) in enumerate(zip(images, labels.tolist())):
        folder = out / f"{label:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(image, str(folder / f"{index:05d}.png"))
    return len(labels)


def main() -> None:
    """Command line: convert FILE into OUT_DIR."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--mean", type=float, nargs="+", default=list(CIFAR10_MEAN))
    parser.add_argument("--std", type=float, nargs="+", default=list(CIFAR10_STD))
    args = parser.parse_args()
    if not args.file.is_file():
        parser.exit(2, f"{args.file} does not exist\n")
    count = write_image_folder(*load_tensor_images(args.file, args.mean, args.std), args.out)
    print(f"wrote {count} images under {args.out}")


if __name__ == "__main__":
    main()
