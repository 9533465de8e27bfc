"""Where each downloadable dataset comes from: file name, official URL and published MD5.

``SOURCES`` is looked up at call time, so tests (and mirrors) can patch an entry.
CIFAR: https://www.cs.toronto.edu/~kriz/cifar.html (MD5 of the python archives as published
there and in torchvision). Fashion-MNIST: https://github.com/zalandoresearch/fashion-mnist
(README table "Get the Data").
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str
    md5: str


_FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

SOURCES: dict[str, tuple[RemoteFile, ...]] = {
    "cifar10": (
        RemoteFile(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        ),
    ),
    "cifar100": (
        RemoteFile(
            "cifar-100-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
        ),
    ),
    "fashion_mnist": tuple(
        RemoteFile(name, _FASHION_MNIST_URL + name, md5)
        for name, md5 in (
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        )
    ),
}
