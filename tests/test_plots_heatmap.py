import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from regkit.plots import heatmap  # noqa: E402


def sweep():
    """A 2x3 (wd, lr) sweep in long form, and its product view lr*wd (a sheared grid)."""
    rows = [{"lr": lr, "wd": wd, "err": 10 * i + j} for i, wd in enumerate([0.1, 1.0]) for j, lr in enumerate([0.1, 0.3, 3.0])]
    df = pd.DataFrame(rows)
    return df.assign(decay=df.lr * df.wd)  # 0.1 * 3.0 = 0.30000000000000004 must share a cell with 0.3 * 1.0


def test_heatmap_places_each_value_in_its_cell_with_rows_upwards():
    fig, ax = heatmap(sweep(), "lr", "wd", "err", fmt=".0f")
    image = ax.get_images()[0].get_array()
    np.testing.assert_array_equal(image, [[0, 1, 2], [10, 11, 12]])  # row 0 = smallest wd (origin lower)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "0.3", "3"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.1", "1"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(["0", "1", "2", "10", "11", "12"])
    assert ax.get_xlabel() == "lr" and ax.get_ylabel() == "wd"
    plt.close(fig)


def test_heatmap_of_a_sheared_grid_merges_rounded_coordinates_and_leaves_missing_cells_blank():
    fig, ax = heatmap(sweep(), "lr", "decay", "err", best="max", colorbar=False)
    image = ax.get_images()[0].get_array()
    # decay values: 0.01, 0.03, 0.1, 0.3 (from 0.1*3.0 and 0.3*1.0), 3.0
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.01", "0.03", "0.1", "0.3", "3"]
    assert image.shape == (5, 3) and image.mask.sum() == 15 - 6
    assert image[3, 2] == 2 and image[3, 1] == 11  # both rounded 0.3 products share the row
    (outline,) = ax.patches  # the best (max) cell: lr=3, decay=3, err=12
    assert outline.get_xy() == (2 - 0.5, 4 - 0.5)
    plt.close(fig)


def test_heatmap_rejects_unknown_columns_duplicates_and_bad_best():
    with pytest.raises(ValueError, match="no column 'loss' in data; columns: lr, wd, err, decay"):
        heatmap(sweep(), "lr", "wd", "loss")
    twice = pd.concat([sweep(), sweep().iloc[:1]])
    with pytest.raises(ValueError, match="several rows for lr=0.1, wd=0.1"):
        heatmap(twice, "lr", "wd", "err")
    with pytest.raises(ValueError, match="best must be 'min', 'max' or None"):
        heatmap(sweep(), "lr", "wd", "err", best="lowest")
