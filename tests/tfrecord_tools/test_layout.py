"""tfrecord_tools.layout: the one place run-layout names are spelled; writers and readers use it."""
from tfrecord_tools import folds, layout


def test_names_and_patterns_agree():
    assert layout.fold_name(3) == "fold_03" and layout.fold_shard(10) == "fold_10.tfrecords"
    assert layout.FOLD_DIR.match(layout.fold_name(7)).group(1) == "07"
    assert layout.FOLD_SHARD.match(layout.fold_shard(7)).group(1) == "07"
    assert not layout.FOLD_DIR.match(layout.fold_shard(7))
    assert layout.pairwise_file("d") == "d/pairwise/pairwise.tfrecords" and layout.label_file("d") == "d/pairwise/label.tsv"


def test_the_fold_writer_writes_the_layout_names(folds_dir):
    names = sorted(p.name for p in folds_dir.iterdir())
    assert layout.FOLDS_JSON in names
    shards = [name for name in names if layout.FOLD_SHARD.match(name)]
    assert shards == [layout.fold_shard(k) for k in range(len(shards))] and len(shards) == 3
    info = folds.read_folds_info(folds_dir)
    assert info["format"] == layout.FOLDS_FORMAT and [f["file"] for f in info["folds"]] == shards
