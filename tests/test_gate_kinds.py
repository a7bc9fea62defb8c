"""The out-of-scope kinds are one table: each row is what a refusal says, what the page lists and where its images
come from, and nothing else names a kind."""

from __future__ import annotations

import pytest

from model.gate import KINDS, OUT_OF_SCOPE_KINDS, RENDERED, looks_like
from model.training.gate_fit import ood_items
from model.training.outofscope import make_out_of_scope
from space.presentation import LIMITATIONS


def write_manifest(folder, kinds: list[str]):
    folder.mkdir(exist_ok=True)
    rows = ["file,kind,patient_id"]
    for i, kind in enumerate(kinds):
        (folder / f"{i}.png").write_bytes(b"not read here")
        rows.append(f"{i}.png,{kind},p{i}")
    (folder / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.parametrize("kind", OUT_OF_SCOPE_KINDS, ids=lambda k: k.name)
def test_every_kind_is_refused_in_its_own_words_and_listed_on_the_page(kind):
    assert kind.name in KINDS
    assert kind.looks_like in looks_like(kind.name) and looks_like(kind.name).startswith("This looks like ")
    assert kind.short in LIMITATIONS[2]


def test_an_out_of_scope_folder_may_hold_the_tables_kinds_only(tmp_path):
    names = [k.name for k in OUT_OF_SCOPE_KINDS]
    assert [item.kind for item in ood_items(write_manifest(tmp_path / "ood", names))] == names
    for wrong in ("in_scope", "cat"):
        with pytest.raises(ValueError, match=f"does not know: \\['{wrong}'\\]"):
            ood_items(write_manifest(tmp_path / wrong, [names[0], wrong]))


def test_the_made_images_are_exactly_the_rendered_kinds():
    made = {image.kind for image in make_out_of_scope(2, 2, seed=0)}
    assert made == {k.name for k in OUT_OF_SCOPE_KINDS if k.made == RENDERED}
