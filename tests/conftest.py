"""Shared pytest fixtures."""
import pytest

import make_demo_data

# tiny demo set shared by the whole session: 2 cell types x (3 train + 1 test) experiments
DEMO_KWARGS = dict(image_size=32, n_sirnas=16, n_controls=4, cell_types=2,
                   train_experiments_per_type=3, test_experiments_per_type=1)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """Path of a tiny synthetic RxRx1-layout data set (with pixel_stats.csv), built once."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_data.main(out_dir=str(root), **DEMO_KWARGS)
    return root
