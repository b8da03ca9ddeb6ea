"""`ohlora label`: a local page for hand-labelling the generated images (gender, quality), with the CNNs' help.

The page (plain HTML/JS, `labelling_page.html`) shows a grid of the `raw_images` asset's faces and is
driven by the keyboard. Every change is written at once, atomically, to exactly the file the
`hand_labels` asset reads (`img_name,quality,gender`, the original's format), so a closed tab or a
killed server loses at most a half-typed label (an image gets its row once both values are set).
Where `gender_quality_scores` was materialized, each image shows the 5-model ensemble's
probabilities; "most uncertain first" orders by distance from the 0.5 decision (active learning).

Only images of the asset are served: the route takes an image *number*, checked against the
asset's manifest; no part of a request becomes a path. The app sits behind `ohlora_core.local_server`'s
guard: only the page's own loopback origin may read or change anything, label changes only as JSON,
small bodies; malformed input is a 400 with a message. In smoke mode the page says that its images are
noise and that its label file feeds nothing.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ohlora_core.artifacts import GenderQualityScores, RawImages
from ohlora_core.cnn.labels import load_hand_labels, write_hand_labels_csv
from ohlora_core.io import atomic_write_text
from ohlora_core.local_server import DEFAULT_MAX_BODY, BadInput, guard, json_error_handlers, read_json_object

PAGE = Path(__file__).with_name("labelling_page.html")


class LabelRequestError(BadInput):
    """A label request that names no image of the set or carries a value other than 0/1 (answered 400)."""


@dataclass
class Label:
    gender: int | None = None
    quality: int | None = None

    @property
    def complete(self) -> bool:
        return self.gender is not None and self.quality is not None


class LabelStore:
    """The hand-label CSV, changed one image at a time; rewritten atomically after each change.

    Complete labels (both values) are the CSV's rows; a label with one value waits in memory. One
    lock serialises changes, so requests from several tabs never lose each other's labels.
    """

    def __init__(self, csv_path: str | Path, n_images: int):
        self.path, self.n_images = Path(csv_path), n_images
        self.lock = threading.Lock()
        self.labels: dict[int, Label] = {}
        if self.path.is_file():
            table = load_hand_labels(self.path, n_images)  # a broken file stops the server, naming the line
            for row in table.itertuples(index=False):
                self.labels[int(row.img_no)] = Label(int(row.gender), int(row.quality))

    @property
    def labelled(self) -> int:
        return sum(1 for label in self.labels.values() if label.complete)

    def set(self, no, gender=None, quality=None) -> Label:
        no = _image_number(no, self.n_images)
        values = {k: _binary(k, v) for k, v in (("gender", gender), ("quality", quality)) if v is not None}
        if not values:
            raise LabelRequestError("nothing to set: give gender and/or quality (0 or 1)")
        with self.lock:
            label = self.labels.setdefault(no, Label())
            for k, v in values.items():
                setattr(label, k, v)
            if label.complete:
                self._write()
            return label

    def _write(self) -> None:
        rows = sorted((no, lab) for no, lab in self.labels.items() if lab.complete)
        table = pd.DataFrame(
            {
                "img_no": [no for no, _ in rows],
                "gender": [lab.gender for _, lab in rows],
                "quality": [lab.quality for _, lab in rows],
            }
        )
        atomic_write_text(self.path, write_hand_labels_csv(table))


def _image_number(value, n_images: int) -> int:
    try:
        no = int(value)
    except (TypeError, ValueError):
        raise LabelRequestError(f"image number must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not 0 <= no < n_images or str(value).strip() != str(no):
        raise LabelRequestError(f"image number must be one of 0..{n_images - 1}, got {value!r}")
    return no


def _binary(name: str, value) -> int:
    if value not in (0, 1) or isinstance(value, bool):
        raise LabelRequestError(f"{name} must be 0 or 1, got {value!r}")
    return int(value)


def cnn_probabilities(scores: GenderQualityScores | None) -> dict[int, dict[str, float]]:
    """{image: {'gender': p, 'quality': p}} from the ensemble's predictions, where there are any."""
    out: dict[int, dict[str, float]] = {}
    if scores is None:
        return out
    for prop in ("gender", "quality"):
        path = scores.inference(prop)
        if path.is_file():
            table = pd.read_csv(path)
            for no, p in zip(table["img_no"], table[f"property_{prop}_final_score"]):
                out.setdefault(int(no), {})[prop] = float(p)
    return out


def cnn_notes(scores: GenderQualityScores | None, numbers, probs: dict, mode: str) -> tuple[str | None, dict[int, str]]:
    """Why the page shows no CNN suggestion: for the whole page (None when there are suggestions) and per image.

    The ensemble predicts only the images that were unlabelled when `gender_quality_scores` ran, so a hand-
    labelled image (then) has no prediction; an image the asset never saw (fewer images then) has none either.
    """
    if scores is None:
        return f"no CNN suggestions: gender_quality_scores is not materialized ({mode} mode)", {}
    if not probs:
        return "no CNN suggestions: every image was hand-labelled when gender_quality_scores was materialized", {}
    seen = set(pd.read_csv(scores.table, usecols=["img_no"])["img_no"]) if scores.table.is_file() else set(numbers)
    notes = {
        no: "hand-labelled when gender_quality_scores was materialized; the CNNs predict only unlabelled images"
        if no in seen
        else "not in gender_quality_scores (materialized for fewer images); rematerialize it"
        for no in numbers
        if len(probs.get(no, {})) < 2
    }
    return None, notes


def page_notice(mode: str, csv: Path) -> str | None:
    """The banner of a smoke-mode page: its images are noise and its labels feed nothing."""
    if mode != "smoke":
        return None
    return (
        f"smoke mode: random-weight images, not faces; labels go to {csv}, which the smoke pipeline does not "
        "read — it uses stand-in labels"
    )


def build_app(
    images: RawImages,
    store: LabelStore,
    expected: int,
    scores: GenderQualityScores | None = None,
    mode: str = "full",
    max_body: int = DEFAULT_MAX_BODY,
):
    """The page, the image of a number, the items and label changes, behind the local-server guard."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    manifest = json.loads(images.manifest.read_text())
    numbers = sorted(int(name.split("/")[-1].split(".")[0]) for name in manifest)
    known = set(numbers)
    probs = cnn_probabilities(scores)
    cnn_note, notes = cnn_notes(scores, numbers, probs, mode)
    about = {
        "mode": mode,
        "labels_file": str(store.path),
        "notice": page_notice(mode, store.path),
        "cnn": bool(probs),
        "cnn_note": cnn_note,
    }

    def item(no: int) -> dict:
        label = store.labels.get(no, Label())
        p = probs.get(no, {})
        return {
            "no": no,
            "gender": label.gender,
            "quality": label.quality,
            "p_gender": p.get("gender"),
            "p_quality": p.get("quality"),
            "cnn_note": notes.get(no),
        }

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.read_text())

    async def items(request: Request) -> Response:
        return JSONResponse(
            {**about, "expected": expected, "labelled": store.labelled, "items": [item(no) for no in numbers]}
        )

    async def image(request: Request) -> Response:
        no = request.path_params["no"]  # an int by the route's convertor: never a path
        if no not in known:
            return JSONResponse({"error": f"no image {no} in raw_images"}, status_code=404)
        return FileResponse(images.image(no), media_type="image/jpeg")

    async def label(request: Request) -> Response:
        body = await read_json_object(request, what="label request")  # BadInput / LabelRequestError: a 400
        store.set(body.get("no"), body.get("gender"), body.get("quality"))
        return JSONResponse({"item": item(int(body["no"])), "labelled": store.labelled})

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/items", items),
            Route("/image/{no:int}", image),
            Route("/api/label", label, methods=["POST"]),
        ],
        exception_handlers=json_error_handlers(),
    )
    return guard(app, max_body=max_body)
