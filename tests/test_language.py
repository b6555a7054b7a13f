"""The text catalogs (English, Vietnamese) and the texts that carry their key and values."""

from __future__ import annotations

import copy
import json
import pickle
import re
import string
import unicodedata

import numpy as np
import pytest
from PIL import Image, ImageDraw

from triage.base.errors import InputError
from triage.base.language import LANGUAGES, Text, catalog, counted, in_language, render
from triage.imaging.eligibility import assess
from triage.report.folder import Result
from triage.report.render import _font
from triage.settings import load_settings

NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_english_text_has_a_vietnamese_one_with_the_same_fields():
    english, vietnamese = catalog("en"), catalog("vi")
    for key, template in english.items():
        translated = vietnamese.get(key) or vietnamese.get(key.removesuffix(".one"))
        assert translated, f"no Vietnamese text for {key}"
        # A singular English form may spell out "1"; the Vietnamese one takes {n}.
        assert _fields(template) - {"n"} <= _fields(translated) <= _fields(template) | {"n"}, key
    assert set(vietnamese) <= set(english)


def test_vietnamese_is_written_with_composed_diacritics_and_differs_from_english():
    vietnamese = catalog("vi")
    for key, template in vietnamese.items():
        assert unicodedata.is_normalized("NFC", template), key
    assert vietnamese["picture.footer"].startswith("Chỉ dùng cho nghiên cứu")
    assert vietnamese["summary.hypoperfused_label"].startswith("Giảm tưới máu")
    prose = [k for k, v in catalog("en").items() if re.search(r"[a-z]{4,}", v) and not k.endswith(".one")]
    assert all(vietnamese[k] != catalog("en")[k] for k in prose)


def test_the_picture_font_draws_every_vietnamese_letter():
    font = _font(30)
    missing = "\ue000"  # a private-use code point: the font's "no glyph" box

    def mask(char):
        image = Image.new("L", (60, 60))
        ImageDraw.Draw(image).text((10, 10), char, font=font, fill=255)
        return np.asarray(image)

    letters = {c for text in catalog("vi").values() for c in text if c.isalpha() and ord(c) > 127}
    assert {"ư", "ơ", "đ", "ả", "ấ", "ộ"} <= letters
    undrawn = [c for c in sorted(letters) if np.array_equal(mask(c), mask(missing))]
    assert undrawn == []


def test_numbers_and_units_are_the_same_in_both_languages():
    values = dict(core_below=0.3, core_ml=18.04, tmax_above=6.0, tmax_ml=104.6)
    english = render("summary.volumes", "en", **values)
    vietnamese = render("summary.volumes", "vi", **values)
    assert english == "Core (rCBF<30%): 18 mL    Tmax>6s: 105 mL"
    assert NUMBER.findall(vietnamese) == NUMBER.findall(english)
    assert vietnamese.count("mL") == english.count("mL") == 2
    assert "Lõi" in vietnamese


def test_a_text_is_its_english_string_and_renders_in_vietnamese():
    reason = assess(80.0, 100.0, age=70, nihss=12).reasons
    defuse3, dawn = reason["defuse3"], reason["dawn"]
    assert isinstance(defuse3, Text) and isinstance(defuse3, str)
    assert defuse3 == "not met: core 80 mL ≥ 70 mL; mismatch ratio 1.2 < 1.8"
    assert defuse3.render("vi") == "không đạt: lõi 80 mL ≥ 70 mL; tỉ lệ bất tương xứng 1.2 < 1.8"
    assert dawn.render("vi") == ("không đạt với tuổi 70, NIHSS 12, lõi 80 mL (cần tuổi < 80, NIHSS ≥ 10, "
                                 "lõi < 31 mL; tuổi < 80, NIHSS ≥ 20, lõi < 51 mL)")
    assert in_language("plain words", "vi") == "plain words"


def test_texts_survive_json_copies_and_pickles_with_numpy_values():
    text = Text("motion.moved_out", frames=[np.int64(3), np.int64(7)], limit_mm=10.0, max_mm=np.float32(12.25))
    assert text == "motion: frames 3, 7 moved more than 10 mm (up to 12.2 mm) and were removed"
    data = json.loads(json.dumps(text.as_dict()))
    for again in (Text.from_dict(data), copy.deepcopy(text), pickle.loads(pickle.dumps(text))):
        assert again == text and again.render("vi") == text.render("vi")
    assert "khung hình 3, 7" in text.render("vi")
    with pytest.raises(InputError, match="unknown text key"):
        Text.from_dict({"key": "no.such.text", "values": {}})


def test_english_singulars_and_vietnamese_without_plurals():
    assert counted("bolus.short_baseline", 1, arrival_s=4.0) == "short baseline: 1 frame before the bolus arrives at 4.0 s"
    assert counted("bolus.short_baseline", 2, arrival_s=4.0).startswith("short baseline: 2 frames")
    assert counted("bolus.short_baseline", 1, arrival_s=4.0).render("vi").startswith("pha nền ngắn: 1 khung hình")


def test_a_result_read_back_renders_its_warnings_in_another_language():
    warning = Text("aif.low_peak", peak_hu=87.4)
    document = {"status": "complete", "series_uid": "1.2.3", "core_ml": 1.0, "tmax6_ml": 2.0, "tmax10_ml": 0.0,
                "mismatch_ml": 1.0, "mismatch_ratio": 2.0, "hir": 0.0,
                "quality": {"level": "limited", "warnings": [warning, "a warning of an older version"]},
                "texts": {"warnings": [warning.as_dict(), None], "reasons": {}}}
    result = Result.from_document(json.loads(json.dumps(document)))
    assert [in_language(w, "vi") for w in result.warnings] == ["đỉnh AIF thấp: 87 HU", "a warning of an older version"]
    unknown = dict(document, texts={"warnings": [{"key": "removed.key", "values": {}}, None]})
    assert Result.from_document(json.loads(json.dumps(unknown))).warnings == (warning, "a warning of an older version")


@pytest.mark.parametrize("language", LANGUAGES)
def test_language_is_a_setting(language, tmp_path):
    config = tmp_path / "triage.toml"
    config.write_text(f'language = "{language}"\n')
    assert load_settings(config, environ={}).analysis.language == language
    assert load_settings(environ={"TRIAGE_LANGUAGE": language}).analysis.language == language


def test_an_unsupported_language_is_refused_in_one_line():
    with pytest.raises(InputError, match=r"^language 'fr' is not supported: en or vi$"):
        load_settings(environ={"TRIAGE_LANGUAGE": "fr"})
