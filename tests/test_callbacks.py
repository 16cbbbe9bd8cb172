"""ae_lab.callbacks: which images the W&B media show, the t-SNE of the latents, and the media
callback's arguments and failures (media never stop a run)."""

import numpy as np
import pandas as pd
import pytest

from ae_lab.callbacks import WandbMediaCallback, round_robin, select_test, tsne_2d
from ae_lab.errors import SettingError


def test_tsne_small_sets():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 8))
    coords = tsne_2d(z, seed=0)
    assert coords.shape == (5, 2) and np.isfinite(coords).all()
    assert np.allclose(coords, tsne_2d(z, seed=0))  # seeded: reruns give the same map
    assert tsne_2d(z[:2]).shape == (2, 2) and tsne_2d(z[:0]).shape == (0, 2)
    assert np.isfinite(tsne_2d(np.ones((3, 8)))).all()


def _table() -> pd.DataFrame:
    rows = [("cable", "good", 0)] * 10 + [("screw", "good", 0)] * 3
    rows += [("cable", "bent", 1)] * 5 + [("cable", "cut", 1)] * 5 + [("screw", "thread", 1)] * 6
    return pd.DataFrame(rows, columns=["category", "defect", "label"])


def test_round_robin_covers_groups_and_is_deterministic():
    good = _table()[_table()["label"] == 0]
    picked = round_robin(good, 8, ["category"], seed=0)
    assert len(picked) == len(set(picked)) == 8
    cats = good.loc[picked, "category"].tolist()
    assert cats[:6] == ["cable", "screw"] * 3 and cats[6:] == ["cable", "cable"]  # screw ran out
    assert picked == round_robin(good, 8, ["category"], seed=0)
    assert round_robin(good, 8, ["category"], seed=1) != picked
    assert sorted(round_robin(good, 100, ["category"])) == list(good.index)  # all, once each
    assert round_robin(good.iloc[:0], 4, ["category"]) == []


def test_select_test_half_good_half_defective_over_defect_types():
    table = _table()
    rows = select_test(table, 16, seed=0)
    picked = table.loc[rows]
    assert len(rows) == len(set(rows)) == 16
    assert (picked["label"] == 0).sum() == 8 and (picked["label"] == 1).sum() == 8
    assert set(picked.loc[picked["label"] == 1, "defect"]) == {"bent", "cut", "thread"}
    assert set(picked.loc[picked["label"] == 0, "category"]) == {"cable", "screw"}
    bad = picked[picked["label"] == 1]
    assert (bad["category"] == "screw").sum() == 4  # classes alternate before defect types do
    assert bad.loc[bad["category"] == "cable", "defect"].value_counts().to_dict() == {
        "bent": 2,
        "cut": 2,
    }
    assert list(picked["category"]) == sorted(picked["category"])  # listed class by class
    few_bad = table[(table["label"] == 0) | (table["defect"] == "cut")].head(15)
    assert len(select_test(few_bad, 16)) == 15  # every available image, no duplicates


@pytest.mark.parametrize(
    "bad", [{"n_images": 0}, {"every_n_epochs": -1}, {"grid_columns": 2.5}, {"selection_seed": "a"}]
)
def test_bad_arguments_are_refused_by_name(bad):
    ((name, value),) = bad.items()
    with pytest.raises(SettingError, match=rf"{name}={value!r} must be an integer") as err:
        WandbMediaCallback(**bad)
    assert err.value.owner is WandbMediaCallback and err.value.names == (name,)


def test_media_errors_never_stop_the_run(caplog):
    class Broken(WandbMediaCallback):
        def _log_val_media(self, *args, **kwargs):
            raise RuntimeError("stack expects a non-empty TensorList")

    callback = Broken()
    callback._last_epoch = 0
    callback.on_train_end(object(), object())  # logged, not raised
    assert "on_train_end failed" in caplog.text and "non-empty TensorList" in caplog.text
