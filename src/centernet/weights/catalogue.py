"""Known weight files: ImageNet backbones and the original CenterNet model zoo (SPEC 8), by name.

Each entry says where the file comes from and what it holds (architecture, task, classes, input size), so
a name such as ``"ctdet_coco_dla_2x"`` is enough to build the model and load it; its heads are the task's
(:attr:`WeightsInfo.heads`), never declared here. ``sha256`` is the full digest where it is known and
otherwise the prefix the file name carries (torchvision and the original DLA name their files
``<net>-<first 8 hex of the sha256>.pth``); ``None`` where nothing is known. The original
zoo lives on Google Drive (``readme/MODEL_ZOO.md`` of xingyizhou/CenterNet); the URLs here are its direct
download form. This module is data (torch-free), read by :mod:`.download`, :mod:`.pretrained` and the CLI.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import COCO_MEAN, COCO_STD

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
KITTI_CLASSES: tuple[str, ...] = ("Pedestrian", "Car", "Cyclist")  # the original ddd's class order
PERSON_CLASSES: tuple[str, ...] = ("person",)

# COCO's category id of each of the 80 classes (ids 1..90 with 10 unused)
COCO_CAT_IDS: tuple[int, ...] = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
CATEGORY_IDS: dict[str, tuple[int, ...]] = {"coco": COCO_CAT_IDS}  # others: 1..C

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "coco": COCO_CLASSES, "voc": VOC_CLASSES, "kitti": KITTI_CLASSES, "person": PERSON_CLASSES,
}

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the original's KITTI values


@dataclass(frozen=True)
class WeightsInfo:
    """One known file. ``kind`` is ``"backbone"`` (ImageNet classifier weights) or ``"detector"``."""

    name: str
    file: str
    url: str | None
    kind: str
    arch: str  # our architecture name (``res_18`` for a ResNet-18 backbone)
    sha256: str | None = None  # full digest, or the prefix the file name carries
    size: int | None = None  # bytes
    task: str | None = None
    num_classes: int = 0
    classes: str | None = None  # key of CLASS_NAMES
    input_size: tuple[int, int] | None = None  # (height, width) the original trained and tested at
    mean: tuple[float, float, float] = COCO_MEAN
    std: tuple[float, float, float] = COCO_STD
    note: str = ""

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[self.classes] if self.classes else ()

    @property
    def heads(self) -> dict[str, int]:
        """{head: channels} of the entry's task for its class count; empty for a task this version lacks
        (``exdet``) and for backbones."""
        from ..tasks import TASKS  # lazily: the catalogue stays torch-free

        if self.task is None or self.task not in TASKS.names():
            return {}
        return dict(TASKS.get(self.task)(num_classes=self.num_classes).head_channels())


_TORCHVISION = "https://download.pytorch.org/models"
_DLA = "http://dl.yf.io/dla/models/imagenet"
_DRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"

# torchvision's IMAGENET1K_V1 ResNets (file name carries the sha256 prefix) and the original DLA-34.
_BACKBONES = {
    "resnet18_imagenet": ("res_18", "resnet18-f37072fd.pth", _TORCHVISION),
    "resnet34_imagenet": ("res_34", "resnet34-b627a593.pth", _TORCHVISION),
    "resnet50_imagenet": ("res_50", "resnet50-0676ba61.pth", _TORCHVISION),
    "resnet101_imagenet": ("res_101", "resnet101-63fe2227.pth", _TORCHVISION),
    "resnet152_imagenet": ("res_152", "resnet152-394f9c45.pth", _TORCHVISION),
    "dla34_imagenet": ("dla_34", "dla34-ba72cf86.pth", _DLA),
}

# name -> (arch, Google Drive id, task, classes, input size); as listed in the original MODEL_ZOO.md
_ZOO: dict[str, tuple[str, str | None, str, str, tuple[int, int]]] = {
    "ctdet_coco_hg": ("hourglass", "13F904yXltGIqa_K3g3-FLleaNX0n7c9O", "ctdet", "coco", (512, 512)),
    "ctdet_coco_dla_1x": ("dla_34", "1xqFsdA3DANMq1MfnXG8n7nQPe4AfXTHv", "ctdet", "coco", (512, 512)),
    "ctdet_coco_dla_2x": ("dla_34", "18Q3fzzAsha_3Qid6mn4jcIFPeOGUaj1d", "ctdet", "coco", (512, 512)),
    "ctdet_coco_resdcn101": ("resdcn_101", "1tKkSyzC3iWmM6XTYNJrC4XLCIToDmnHz", "ctdet", "coco", (512, 512)),
    "ctdet_coco_resdcn18": ("resdcn_18", "1RtFps3kQAyLjQyzCao7pPDclOBQ64Vyp", "ctdet", "coco", (512, 512)),
    "exdet_coco_hg": ("hourglass", "1gf9bVWs9htzOaQiAF_mqaa2SCFTvwNvh", "exdet", "coco", (512, 512)),
    # MODEL_ZOO.md links exdet_coco_dla to ctdet_coco_resdcn18's file (a copy slip there): no known URL.
    "exdet_coco_dla": ("dla_34", None, "exdet", "coco", (512, 512)),
    "ctdet_pascal_dla_384": ("dla_34", "19J7WoUZKYiSEU7vrhZInz5C2m0-9zmC1", "ctdet", "voc", (384, 384)),
    "ctdet_pascal_dla_512": ("dla_34", "1Iqqr_VLtG8T3tUzy-EuMaeuCtFuv6pEU", "ctdet", "voc", (512, 512)),
    "ctdet_pascal_resdcn18_384": ("resdcn_18", "1mpeslWUt0aJqx99_-UcCzJ7GBcD6sCA-", "ctdet", "voc", (384, 384)),
    "ctdet_pascal_resdcn18_512": ("resdcn_18", "1ILnmGrJQiDK2Ib-D7TzBs2fq5bfju-Bd", "ctdet", "voc", (512, 512)),
    "ctdet_pascal_resdcn101_384": ("resdcn_101", "1-Qy4zMhzmBk9fMF0u2s5zNI0Uj9latsk", "ctdet", "voc", (384, 384)),
    "ctdet_pascal_resdcn101_512": ("resdcn_101", "1TiJkPaofzUaEMLi5wr9TIIUY8G2VewCQ", "ctdet", "voc", (512, 512)),
    "multi_pose_hg_1x": ("hourglass", "1neg1zfVjRTS45FCdk5hgIV-TxJ0McAew", "multi_pose", "person", (512, 512)),
    "multi_pose_hg_3x": ("hourglass", "17-YS11iguOQKwPPHUg8LzakLzrgKSLfA", "multi_pose", "person", (512, 512)),
    "multi_pose_dla_1x": ("dla_34", "1WKqVdkIew43SxLTSxi81a-_f4Q9v2Fx5", "multi_pose", "person", (512, 512)),
    "multi_pose_dla_3x": ("dla_34", "1mC2PAQT_RuHi_9ZMZgkt4rg7BSY2_Lkd", "multi_pose", "person", (512, 512)),
    "ddd_3dop": ("dla_34", "1LrAzVJqlZECVuyr_NJI_4xd88mA1fL5b", "ddd", "kitti", (384, 1280)),
    "ddd_sub": ("dla_34", "1ZUsUqrM_yTjxaJuDBxm0WTKXj1snVuvP", "ddd", "kitti", (384, 1280)),
}

# SPEC 8: the two files whose digest and size are known.
_KNOWN_DIGESTS = {
    "ctdet_coco_resdcn18": ("f9e413f91cdb235adbcb41c5c4052b8f7ff53999374048949789c29d6df18eaa", 57_825_323),
    "ctdet_coco_dla_2x": ("43bf4cc2efe00e02c1ae8484035b062a35543872d276c7dcfeb4db3e64203e4f", 80_911_783),
}


def _build() -> dict[str, WeightsInfo]:
    out: dict[str, WeightsInfo] = {}
    for name, (arch, file, base) in _BACKBONES.items():
        prefix = file.rsplit("-", 1)[1].removesuffix(".pth")
        out[name] = WeightsInfo(name=name, file=file, url=f"{base}/{file}", kind="backbone", arch=arch,
                                sha256=prefix, num_classes=1000, input_size=(224, 224))
    for name, (arch, drive_id, task, classes, size) in _ZOO.items():
        digest, nbytes = _KNOWN_DIGESTS.get(name, (None, None))
        kitti = classes == "kitti"
        out[name] = WeightsInfo(
            name=name, file=f"{name}.pth", url=_DRIVE.format(drive_id) if drive_id else None, kind="detector",
            arch=arch, sha256=digest, size=nbytes, task=task,
            num_classes=len(CLASS_NAMES[classes]), classes=classes, input_size=size,
            mean=IMAGENET_MEAN if kitti else COCO_MEAN, std=IMAGENET_STD if kitti else COCO_STD,
            note="ExtremeNet-style task this project does not implement" if task == "exdet" else "",
        )
    return out


_REGISTRY = _build()


def known_weights(kind: str | None = None) -> list[str]:
    """Names of the known files (``kind``: ``"backbone"`` / ``"detector"`` / ``None`` for all), sorted."""
    return sorted(n for n, info in _REGISTRY.items() if kind is None or info.kind == kind)


def weights_info(name: str) -> WeightsInfo:
    """The entry for ``name``; ``KeyError`` with the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no known weights named {name!r}; known: {', '.join(known_weights())}") from None


def is_known(name: str) -> bool:
    return name in _REGISTRY


def imagenet_weights(arch: str) -> str | None:
    """The ImageNet file an architecture's backbone starts from (``res_18`` and ``resdcn_18`` share
    ``resnet18_imagenet``), or ``None`` (reduced-width CPU archs, Hourglass: the original started it from
    ExtremeNet, not ImageNet)."""
    family, _, depth = arch.partition("_")
    if family in ("res", "resdcn") and depth.isdigit():
        arch = f"res_{depth}"
    for name, info in _REGISTRY.items():
        if info.kind == "backbone" and info.arch == arch:
            return name
    return None
