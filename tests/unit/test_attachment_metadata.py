"""Photo metadata stripping (server/attachments.py): EXIF and text chunks go, pixels stay, and
no input makes it fail other than with a 422 the phone can act on."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from server.errors import GridsyncError
from server.registry.attachments import strip_metadata
from tests.factories import photo


def test_exif_and_text_go_and_the_pixels_stay() -> None:
    for kind, media_type in (("JPEG", "image/jpeg"), ("PNG", "image/png")):
        taken = photo(kind)
        stripped = strip_metadata(taken, media_type)
        assert b"PhoneMaker" in taken
        assert b"PhoneMaker" not in stripped
        image = Image.open(io.BytesIO(stripped))
        assert dict(image.getexif()) == {}
        assert image.tobytes() == Image.open(io.BytesIO(taken)).tobytes()
        # Stripping twice changes nothing more.
        assert strip_metadata(stripped, media_type) == stripped


def test_other_files_are_kept_as_sent() -> None:
    assert strip_metadata(b"GIF89a-anything", "image/gif") == b"GIF89a-anything"


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(min_value=0, max_value=2000),
    noise=st.binary(max_size=64),
    kind=st.sampled_from(["JPEG", "PNG"]),
)
def test_damaged_photos_answer_422_and_nothing_else(cut: int, noise: bytes, kind: str) -> None:
    media_type = "image/jpeg" if kind == "JPEG" else "image/png"
    damaged = photo(kind)[:cut] + noise
    assert _outcome(damaged, media_type) in ("stripped", (422, "damaged_image"))


def _outcome(content: bytes, media_type: str) -> object:
    try:
        strip_metadata(content, media_type)
    except GridsyncError as error:
        return (error.status, error.code)
    return "stripped"
