"""The host's refusal data with a clear error when its refusal file is missing."""

import os
from pathlib import Path

from data.qa import QAwithIdkDataset


class IdkQADataset(QAwithIdkDataset):
    """open-unlearning's ``QAwithIdkDataset`` (each item: the QA pair as "original", the
    question with a random line of ``idk_path`` as "alternate"), checking ``idk_path`` first."""

    def __init__(self, idk_path, *args, **kwargs):
        path = Path(idk_path)
        if not path.is_file() or not path.read_text().strip():
            where = "" if path.is_absolute() else f" (relative to {os.getcwd()})"
            raise FileNotFoundError(
                f"idk_path {str(idk_path)!r}{where} is no file of refusals, one a line: "
                "fetch open-unlearning's with `python setup_data.py --idk` in the host "
                "checkout, or set idk_path=<your file>"
            )
        super().__init__(idk_path, *args, **kwargs)
