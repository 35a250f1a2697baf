"""Face recognition: matching on made-up descriptors, galleries, ``streamvision faces enroll``, and the
astronaut recognized in another crop of her photo but in none of scikit-image's LFW faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from streamvision.cli import app
from streamvision.config import load_config
from streamvision.decoders.faceres import UNKNOWN, match, normalize
from streamvision.errors import ConfigError
from streamvision.frame import Detections, Frame, Labels
from streamvision.pipeline import Pipeline
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.session import ThreadBudget
from streamvision.stages import StageContext, build_stage
from streamvision.stages.faces.enroll import enroll, person_photos
from streamvision.stages.faces.gallery import Gallery
from streamvision.stages.faces.recognize import RecognizeConfig


def test_match_takes_each_persons_best_photo_and_marks_strangers_unknown() -> None:
    gallery = normalize(np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1]], np.float32))
    names = np.array(["ann", "ann", "bob", "cy"])
    queries = normalize(np.array([[0.8, 0.6, 0.0], [0.0, 0.2, 1.0], [1.0, -1.0, 0.9]], np.float32))
    best, similarity = match(queries, gallery, names, 0.7, top_k=2)
    assert best.tolist() == [["ann", "bob"], ["cy", "bob"], [UNKNOWN, "cy"]]
    np.testing.assert_allclose(similarity[0], [1.0, 0.6], atol=1e-6)
    assert similarity[2, 0] < 0.7
    with pytest.raises(ValueError, match="names must have shape"):
        match(queries, gallery, names[:2], 0.5)


def test_gallery_round_trip_and_bad_files(tmp_path: Path) -> None:
    gallery = Gallery(
        names=np.array(["ann", "bob"]),
        descriptors=normalize(np.eye(2, 4, dtype=np.float32)),
        sources=np.array(["a.jpg", "b.jpg"]),
        model="faceres",
        crop_scale=1.4,
    )
    gallery.save(tmp_path / "g.npz")
    loaded = Gallery.load(tmp_path / "g.npz")
    assert (
        loaded.people == ["ann", "bob"]
        and loaded.model == "faceres"
        and loaded.crop_scale == pytest.approx(1.4)
    )
    np.testing.assert_array_equal(loaded.descriptors, gallery.descriptors)
    (tmp_path / "bad.npz").write_text("not a gallery")
    with pytest.raises(ConfigError, match="not a face gallery"):
        Gallery.load(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="cannot read gallery"):
        Gallery.load(tmp_path / "missing.npz")


def test_people_are_named_by_subfolder_or_file_name(tmp_path: Path) -> None:
    (tmp_path / "bob").mkdir()
    for path in (
        tmp_path / "ann_2.jpg",
        tmp_path / "bob" / "x.png",
        tmp_path / "cy.jpeg",
        tmp_path / "notes.txt",
    ):
        path.write_bytes(b"")
    assert [(n, p.name) for n, p in person_photos(tmp_path)] == [
        ("ann", "ann_2.jpg"),
        ("bob", "x.png"),
        ("cy", "cy.jpeg"),
    ]
    with pytest.raises(ConfigError, match="not a folder"):
        person_photos(tmp_path / "bob" / "x.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no photos"):
        person_photos(tmp_path / "empty")


@pytest.fixture(scope="module")
def gallery_file(astronaut: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery enrolling the astronaut (as ``eileen``) through the command line."""
    people = tmp_path_factory.mktemp("people")
    (people / "eileen_1.png").write_bytes(astronaut.read_bytes())
    cv2.imwrite(str(people / "nobody.png"), np.full((120, 160, 3), 90, np.uint8))
    output = people.parent / "gallery.npz"
    result = CliRunner().invoke(app, ["faces", "enroll", str(people), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "1 people from 1 photos (eileen)" in result.output
    assert "nobody.png: no face found" in result.output
    return output


def test_enrolling_a_folder_without_faces_is_an_error(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(ConfigError, match="no face found in any photo"):
        enroll(tmp_path)


def test_astronaut_is_recognized_in_a_shifted_scaled_crop(
    astronaut: Path, gallery_file: Path, tmp_path: Path
) -> None:
    photo = cv2.imread(str(astronaut))
    assert photo is not None
    shifted = cv2.resize(photo[40:400, 100:440], None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "crop.png"), shifted)
    events = tmp_path / "events.jsonl"
    (tmp_path / "who.yaml").write_text(
        f"source: {tmp_path / 'crop.png'}\n"
        "stages:\n"
        "  - {type: face_detection}\n"
        f"  - {{type: recognize, gallery: {gallery_file}, name: who}}\n"
        f"outputs: {{events: {events}}}\n"
        "events:\n"
        "  rules: [{type: recognized, labels: who, debounce_frames: 1}]\n"
    )
    Pipeline(load_config(tmp_path / "who.yaml")).run()
    frame_line, *rule_lines = (json.loads(line) for line in events.read_text().splitlines())
    (who,) = frame_line["results"]["who"]
    assert who["on"] == "face_detection" and who["detection"] == 0
    assert who["label"] == "eileen" and who["score"] >= 0.9, who
    assert [(e["type"], e["name"]) for e in rule_lines] == [("person_recognized", "eileen")], rule_lines


def test_no_lfw_face_matches_the_astronaut(gallery_file: Path) -> None:
    from skimage import data

    faces = data.lfw_subset()[:100]  # the first 100 are faces, 25 x 25 grey
    stage = build_stage(RecognizeConfig(gallery=gallery_file), StageContext(ModelRegistry(), ThreadBudget(2)))
    whole = Detections(
        xyxy=np.array([[0, 0, 100, 100]], np.float32),
        confidence=np.ones(1, np.float32),
        class_id=np.zeros(1, np.int32),
        class_name=np.array(["face"]),
    )
    best = []
    for face in faces:
        grey = cv2.resize((face * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        frame = Frame(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), "lfw", 0, None, 0.0)
        labels = stage.process(frame.with_result("face_detection", whole)).results["recognize"]
        assert isinstance(labels, Labels) and len(labels) == 1
        assert labels.class_name[0] == UNKNOWN, labels.to_records()
        best.append(float(labels.score[0]))
    assert max(best) < 0.6
